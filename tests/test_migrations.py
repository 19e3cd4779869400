"""The schema's migrations form one line of revisions."""

from __future__ import annotations

from respd.store.migrate import head_revision


def test_the_migrations_have_one_head() -> None:
    # Work merged from parallel branches adds revisions side by side; each must be re-pointed onto the one
    # before it, or alembic finds several heads and every server refuses to start.
    head_revision.cache_clear()
    assert head_revision() == "0008_containers"
