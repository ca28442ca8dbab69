"""Java ``.properties`` files, read and written exactly as ``java.util.Properties`` does.

IBC loads config.ini with ``Properties.load(InputStream)``, so a credential or a time in that
file means what Java makes of its bytes, not what it looks like: ``\\`` escapes, a trailing
``\\`` that swallows the next line, ISO-8859-1, leading whitespace dropped. The supervisor
renders config.ini with :func:`dump` and the simulator reads it with :func:`load`, so both
sides agree with the real Gateway. Pure: bytes in, values out.

:func:`load` follows OpenJDK 17's ``Properties.LineReader.readLine`` and ``load0`` /
``loadConvert`` step by step (including the corner cases, such as a value keeping its trailing
whitespace); :func:`escape_key` / :func:`escape_value` follow ``Properties.saveConvert`` with
``escUnicode`` on, as ``Properties.store(OutputStream, ...)`` writes them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator

__all__ = ["PropertiesError", "dump", "escape_key", "escape_value", "load"]

# The whitespace Java skips before a key and around a separator (not \r or \n: they end lines).
_BLANK = " \t\f"
_EOL = "\r\n"
_HEX = "0123456789ABCDEF"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class PropertiesError(ValueError):
    """A properties file Java would refuse: ``Properties.load`` throws on it.

    ``line`` is the 1-based physical line where the offending logical line starts. The message
    never repeats the line's text, since config.ini lines hold passwords.
    """

    def __init__(self, message: str, *, line: int, source: str) -> None:
        super().__init__(f"{source} line {line}: {message}")
        self.line = line
        self.source = source


def load(data: bytes, *, source: str = "properties") -> dict[str, str]:
    """The key/value pairs ``java.util.Properties.load(InputStream)`` reads from ``data``.

    A later key replaces an earlier one, as in Java's Hashtable. Raises :class:`PropertiesError`
    (naming ``source`` and the line) where Java throws ``IllegalArgumentException``: a
    ``\\u`` escape not followed by four hex digits.
    """
    # Java reads the stream byte by byte as ISO-8859-1: every byte is one char, none is invalid.
    text = data.decode("latin-1")
    breaks = [m.end() for m in _LINE_BREAK.finditer(text)]
    result: dict[str, str] = {}
    for start, line in _logical_lines(text):
        lineno = bisect.bisect_right(breaks, start) + 1
        key, value = _split(line)
        result[_unescape(key, lineno, source)] = _unescape(value, lineno, source)
    return result


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Java's LineReader: yield (offset where it starts, logical line with continuations joined).

    Comment lines and blank lines are skipped; leading whitespace is dropped from each line and
    from each continuation; the odd trailing backslash that joins two lines is removed.
    """
    n = len(text)
    off = 0
    while True:
        buf: list[str] = []
        start = off
        skip_blank = True
        appended_line_begin = False
        preceding_backslash = False
        while True:
            if off >= n:
                if not buf:
                    return
                yield start, "".join(buf[:-1] if preceding_backslash else buf)
                return
            c = text[off]
            off += 1
            if skip_blank:
                if c in _BLANK:
                    continue
                # Blank lines are skipped, except right after a continuation, where an empty
                # line ends the logical line.
                if not appended_line_begin and c in _EOL:
                    continue
                skip_blank = False
                appended_line_begin = False
            if not buf and c in "#!":
                # A comment runs to the end of the physical line; a backslash there
                # continues nothing.
                while off < n and text[off] not in _EOL:
                    off += 1
                if off >= n:
                    return
                off += 1
                skip_blank = True
                continue
            if c not in _EOL:
                if not buf:
                    start = off - 1
                buf.append(c)
                preceding_backslash = (c == "\\") and not preceding_backslash
                continue
            # End of a physical line.
            if not buf:
                skip_blank = True
                continue
            if off >= n:
                yield start, "".join(buf[:-1] if preceding_backslash else buf)
                return
            if preceding_backslash:
                # The backslash is not part of the value; the next line's leading whitespace
                # is dropped and a CR LF pair counts as one line break.
                buf.pop()
                skip_blank = True
                appended_line_begin = True
                preceding_backslash = False
                if c == "\r" and text[off] == "\n":
                    off += 1
                continue
            yield start, "".join(buf)
            break


def _split(line: str) -> tuple[str, str]:
    """Java's load0: the raw (still escaped) key and value of one logical line."""
    limit = len(line)
    key_len = 0
    value_start = limit
    has_sep = False
    preceding_backslash = False
    while key_len < limit:
        c = line[key_len]
        if c in "=:" and not preceding_backslash:
            value_start = key_len + 1
            has_sep = True
            break
        if c in _BLANK and not preceding_backslash:
            value_start = key_len + 1
            break
        preceding_backslash = (c == "\\") and not preceding_backslash
        key_len += 1
    # Whitespace after the key, and at most one '=' or ':' among it, separate key and value.
    while value_start < limit:
        c = line[value_start]
        if c not in _BLANK:
            if not has_sep and c in "=:":
                has_sep = True
            else:
                break
        value_start += 1
    return line[:key_len], line[value_start:]


def _unescape(raw: str, lineno: int, source: str) -> str:
    """Java's loadConvert, then UTF-16 surrogate pairs joined into code points."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    end = len(raw)
    while i < end:
        c = raw[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        # LineReader never leaves an unescaped backslash last, so a character follows.
        c = raw[i]
        i += 1
        if c == "u":
            digits = raw[i : i + 4]
            if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesError(
                    "malformed \\uxxxx escape (Java's Properties.load throws on it)",
                    line=lineno,
                    source=source,
                )
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append({"t": "\t", "r": "\r", "n": "\n", "f": "\f"}.get(c, c))
    return _join_surrogates("".join(out))


def _join_surrogates(text: str) -> str:
    """A Java String holds UTF-16 units; a high+low pair is one character to everyone else."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if "\ud800" <= ch <= "\udbff" and i + 1 < len(text) and "\udc00" <= text[i + 1] <= "\udfff":
            out.append(chr(0x10000 + ((ord(ch) - 0xD800) << 10) + (ord(text[i + 1]) - 0xDC00)))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape_key(text: str) -> str:
    """``text`` written as a properties key, as Java's store writes it (every space escaped)."""
    return _save_convert(text, escape_space=True)


def escape_value(text: str) -> str:
    """``text`` written as a properties value, as Java's store writes it.

    Backslashes, a leading space, ``=``, ``:``, ``#``, ``!``, tab/CR/LF/FF and every character
    outside printable ASCII are escaped (``\\uXXXX``, surrogate pairs above U+FFFF), so the
    result is plain ASCII that loads back to ``text`` unchanged.
    """
    return _save_convert(text, escape_space=False)


def _save_convert(text: str, *, escape_space: bool) -> str:
    out: list[str] = []
    for x, ch in enumerate(text):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                f"character {x + 1} is a lone UTF-16 surrogate (U+{code:04X}): not text, "
                "and not representable in a properties file"
            )
        if 61 < code < 127:
            out.append("\\\\" if ch == "\\" else ch)
        elif ch == " ":
            out.append("\\ " if x == 0 or escape_space else " ")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch in "=:#!":
            out.append("\\" + ch)
        elif code < 0x20 or code > 0x7E:
            out.extend(_u_escape(unit) for unit in _utf16_units(code))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(code: int) -> tuple[int, ...]:
    if code < 0x10000:
        return (code,)
    code -= 0x10000
    return (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))


def _u_escape(unit: int) -> str:
    return "\\u" + "".join(_HEX[(unit >> shift) & 0xF] for shift in (12, 8, 4, 0))


def dump(pairs: Iterable[tuple[str, str]]) -> bytes:
    """``key=value`` lines, escaped so that :func:`load` (and Java) read back the same pairs.

    The output is ASCII, one pair per line, in the given order; a repeated key loads as its
    last value.
    """
    lines = [f"{escape_key(key)}={escape_value(value)}\n" for key, value in pairs]
    return "".join(lines).encode("ascii")
