"""How a validation error reads: the field as a person writes it, and what is wrong with it."""

from gristmill.http_errors import field_path, readable_message


def test_field_paths_leave_out_the_body_and_union_tags() -> None:
    assert field_path(("body", "@batch", "items", 0, "url")) == "items[0].url"
    assert field_path(("body", "@item", "meta")) == "meta"
    assert field_path(("body", "@item")) == "body"
    assert field_path(("body", "filter", "metadata", "team")) == "filter.metadata.team"
    assert field_path(("query", "limit")) == "query parameter limit"
    assert field_path(("path", "library_id")) == "path parameter library_id"
    assert field_path(()) == "body"


def test_messages_say_what_is_wrong_and_what_a_field_is_called_here() -> None:
    hints = {"meta": "metadata"}
    extra = {"type": "extra_forbidden", "loc": ("body", "@item", "meta"), "msg": "Extra inputs are not permitted"}
    assert readable_message(extra, hints) == "unknown field (here: metadata)"
    assert readable_message({**extra, "loc": ("body", "colour")}, hints) == "unknown field"
    assert readable_message({"type": "missing", "loc": ("body", "query"), "msg": "Field required"}, hints) == "required"
    value_error = {"type": "value_error", "loc": ("body",), "msg": "Value error, give exactly one of 'content' or 'url'"}
    assert readable_message(value_error, hints) == "give exactly one of 'content' or 'url'"


def test_field_paths_leave_out_pydantic_validator_steps() -> None:
    assert field_path(("body", "items", 1, "url", "function-wrap[wrap_val()]")) == "items[1].url"
    assert field_path(("body", "url", "function-after[check()]", "x")) == "url.x"
