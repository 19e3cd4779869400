"""Files: text extraction, and the files a request names in its input (``input_file``, ``input_image``)."""
