"""Where bytes come from: inline content, files on disk, http(s) URLs. Each returns `FetchedContent`."""

from connectors.file import guess_content_type, read_file
from connectors.inline import read_blob, read_inline
from connectors.url import fetch_url

__all__ = ["fetch_url", "guess_content_type", "read_blob", "read_file", "read_inline"]
