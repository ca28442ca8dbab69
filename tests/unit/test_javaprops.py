"""gateway.javaprops reads and writes properties exactly as java.util.Properties does."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import javaprops

# Any text a credential or setting could hold: hypothesis' text() already leaves out lone
# surrogates, which are not text.
TEXT = st.text(max_size=40)


class TestLoadReadsWhatJavaReads:
    def test_separators_equals_colon_and_whitespace(self) -> None:
        got = javaprops.load(b"a=1\nb:2\nc 3\nd\t=\t4\ne = : 5\n")
        assert got == {"a": "1", "b": "2", "c": "3", "d": "4", "e": ": 5"}

    def test_leading_whitespace_dropped_trailing_whitespace_kept(self) -> None:
        assert javaprops.load(b"   key =   value  \n") == {"key": "value  "}

    def test_comments_and_blank_lines(self) -> None:
        got = javaprops.load(b"# a=1\n  ! b=2\n\n\r\nc=3 # not a comment\n")
        assert got == {"c": "3 # not a comment"}

    def test_trailing_backslash_swallows_the_next_line(self) -> None:
        got = javaprops.load(b"IbPassword=secret\\\nTradingMode=paper\nX=1\n")
        assert got == {"IbPassword": "secretTradingMode=paper", "X": "1"}

    def test_continuation_drops_the_next_lines_leading_whitespace(self) -> None:
        assert javaprops.load(b"k = one \\\n     two\n") == {"k": "one two"}

    def test_crlf_and_cr_line_ends(self) -> None:
        assert javaprops.load(b"a=1\r\nb=2\rc=3\\\r\n  4") == {"a": "1", "b": "2", "c": "34"}

    def test_even_backslashes_do_not_continue(self) -> None:
        assert javaprops.load(b"a=x\\\\\nb=2\n") == {"a": "x\\", "b": "2"}

    def test_escapes(self) -> None:
        got = javaprops.load(b"k\\ ey\\=x=\\t\\n\\r\\f\\q\\u00e9\\u20AC\n")
        assert got == {"k ey=x": "\t\n\r\fq\u00e9\u20ac"}

    def test_surrogate_pair_escape_is_one_character(self) -> None:
        assert javaprops.load(b"k=\\uD83D\\uDE00") == {"k": "\U0001f600"}

    def test_iso_8859_1_bytes(self) -> None:
        assert javaprops.load("k=caf\u00e9".encode("latin-1")) == {"k": "caf\u00e9"}
        # UTF-8 bytes are read one char per byte, as Java does: mojibake, not an error.
        assert javaprops.load("k=\u00e9".encode()) == {"k": "\u00c3\u00a9"}

    def test_later_key_wins(self) -> None:
        assert javaprops.load(b"a=1\na=2\n") == {"a": "2"}

    def test_key_without_value(self) -> None:
        assert javaprops.load(b"alone\nempty=\n") == {"alone": "", "empty": ""}

    def test_backslash_alone_at_end_of_file_is_an_empty_key(self) -> None:
        assert javaprops.load(b"\\") == {"": ""}

    def test_comment_inside_a_continuation_that_emptied_the_line(self) -> None:
        assert javaprops.load(b"\\\n#x=1\ny=2") == {"y": "2"}

    @pytest.mark.parametrize("bad", [b"k=\\u12", b"k=\\u12G4", b"k=\\uzzzz rest"])
    def test_malformed_unicode_escape_names_the_line_not_the_text(self, bad: bytes) -> None:
        with pytest.raises(javaprops.PropertiesError) as caught:
            javaprops.load(b"# first\nok=1\n" + bad + b"\n", source="config.ini")
        assert caught.value.line == 3
        assert "config.ini line 3" in str(caught.value)
        assert "12" not in str(caught.value).replace("line 3", "")
        assert isinstance(caught.value, ValueError)

    def test_line_number_is_where_a_continued_line_starts(self) -> None:
        with pytest.raises(javaprops.PropertiesError) as caught:
            javaprops.load(b"a=1\nb=x\\\n  \\u00\n")
        assert caught.value.line == 2


class TestEscapeWritesWhatJavaStoreWrites:
    def test_value_escapes(self) -> None:
        assert javaprops.escape_value("  a b=c:d#e!f\\") == "\\  a b\\=c\\:d\\#e\\!f\\\\"

    def test_key_escapes_every_space(self) -> None:
        assert javaprops.escape_key("a b") == "a\\ b"

    def test_non_ascii_and_control_characters(self) -> None:
        assert javaprops.escape_value("\u00e9\x01\x7f\U0001f600") == (
            "\\u00E9\\u0001\\u007F\\uD83D\\uDE00"
        )
        assert javaprops.escape_value("\t\n\r\f") == "\\t\\n\\r\\f"

    def test_lone_surrogate_is_refused(self) -> None:
        with pytest.raises(ValueError, match="surrogate"):
            javaprops.escape_value("a\ud800")

    def test_dump_is_ascii_lines(self) -> None:
        assert javaprops.dump([("IbLoginId", "u"), ("IbPassword", "p\\")]) == (
            b"IbLoginId=u\nIbPassword=p\\\\\n"
        )


@settings(max_examples=400)
@given(st.dictionaries(TEXT, TEXT, max_size=8))
def test_load_reads_back_what_dump_wrote(pairs: dict[str, str]) -> None:
    assert javaprops.load(javaprops.dump(pairs.items())) == pairs


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_load_never_fails_but_with_properties_error(data: bytes) -> None:
    with contextlib.suppress(javaprops.PropertiesError):
        javaprops.load(data)
