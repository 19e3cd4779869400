"""webhook deliveries and their attempts; rate-limit windows and stream slots

Revision ID: 0006_ops
Revises: 0009_hosted_calls
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_ops"
down_revision = "0009_hosted_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("event_id", sa.String(80), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("response_id", sa.String(80), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(256), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(80), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_response", "webhook_deliveries", ["response_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", sa.String(80), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("replica", sa.String(80), nullable=False),
    )
    op.create_table(
        "rate_limit_windows",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rate_limit_streams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_rate_limit_streams_tenant", "rate_limit_streams", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_streams_tenant", "rate_limit_streams")
    op.drop_table("rate_limit_streams")
    op.drop_table("rate_limit_windows")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_response", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
