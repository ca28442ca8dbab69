"""The real java.util.Properties (the machine's Java 17) reads what gateway.javaprops reads.

A tiny Java program loads each sample with Properties.load(InputStream), as IBC loads
config.ini, and prints every key and value as UTF-16 code units in hex; the test compares that
with javaprops.load on the same bytes, and checks that javaprops.dump's output loads back in
Java to the values it was given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway import javaprops

JAVA_SOURCE = r"""
import java.io.*;
import java.util.*;

public class LoadProps {
    static String hex(String s) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            if (i > 0) out.append(' ');
            out.append(String.format("%04x", (int) s.charAt(i)));
        }
        return out.toString();
    }

    public static void main(String[] args) throws Exception {
        for (String path : args) {
            Properties props = new Properties();
            try (InputStream in = new FileInputStream(path)) {
                props.load(in);
            } catch (IllegalArgumentException e) {
                System.out.println("FILE " + path + " ERROR");
                continue;
            }
            System.out.println("FILE " + path + " " + props.size());
            for (String key : new TreeSet<>(props.stringPropertyNames())) {
                System.out.println("K " + hex(key));
                System.out.println("V " + hex(props.getProperty(key)));
            }
        }
    }
}
"""

SAMPLES: dict[str, bytes] = {
    "password_ends_in_backslash": b"IbLoginId=edemo\nIbPassword=secret\\\nTradingMode=paper\n",
    "separators": b"a=1\nb:2\nc 3\nd\t=\t4\ne = : 5\nf==6\ng::7\n",
    "comments": b"# a=1\n  ! b=2\n\n\r\nc=3 # kept\n#\\\nd=4\n",
    "spaces": b"   key =   value  \n k\\ ey = \\  lead\n",
    "continuations": b"k = one \\\n     two\\\r\n\tthree\nx=\\\\\ny=2\n",
    "escapes": b"k\\ ey\\=x=\\t\\n\\r\\f\\q\\u00e9\\u20AC\\uD83D\\uDE00\n",
    "latin1": "pw=caf\u00e9 \u00ff\n".encode("latin-1"),
    "utf8_bytes": "pw=caf\u00e9\n".encode(),
    "empty_things": b"alone\nempty=\n=novalue\n\\",
    "backslash_line_then_comment": b"\\\n#x=1\ny=2",
    "continued_into_blank": b"a=1\\\n\nb=2\n",
    "trailing_backslash_at_eof": b"a=1\\",
    "cr_only": b"a=1\rb=2\\\r  3\r",
    "malformed_short_u": b"ok=1\nIbPassword=ab\\u12\n",
    "malformed_bad_hex": b"IbPassword=\\uZZZZ\n",
    "malformed_u_in_key": b"\\u00g0=1\n",
}

DUMPED: list[tuple[str, str]] = [
    ("IbPassword", "secret\\"),
    ("pw2", "  =:#! mixed\\ \u00e9\u20ac\U0001f600\t\n\r\f\x00\x7f"),
    ("key with spaces", "value"),
    ("", "empty key"),
    ("#notcomment", "!"),
]


def _java_or_skip() -> tuple[str, str]:
    java, javac = shutil.which("java"), shutil.which("javac")
    if java and javac:
        return java, javac
    if os.environ.get("CI"):
        pytest.fail("CI is set but java/javac (Java 17) is not on PATH", pytrace=False)
    pytest.skip("java/javac not installed here; CI runs this with Java 17")


def _units(line: str) -> str:
    body = line[2:]
    if not body:
        return ""
    units = [int(h, 16) for h in body.split(" ")]
    # Java prints UTF-16 units; join surrogate pairs the way Python text holds them.
    return "".join(chr(u) for u in units).encode("utf-16", "surrogatepass").decode("utf-16")


def _java_loads(tmp_path: Path, files: dict[str, bytes]) -> dict[str, dict[str, str] | None]:
    java, javac = _java_or_skip()
    (tmp_path / "LoadProps.java").write_text(JAVA_SOURCE)
    subprocess.run([javac, "LoadProps.java"], cwd=tmp_path, check=True, timeout=120)
    paths = []
    for name, data in files.items():
        path = tmp_path / f"{name}.properties"
        path.write_bytes(data)
        paths.append(str(path))
    out = subprocess.run(
        [java, "-cp", str(tmp_path), "LoadProps", *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    results: dict[str, dict[str, str] | None] = {}
    current: dict[str, str] | None = None
    key = ""
    for line in out.splitlines():
        if line.startswith("FILE "):
            _, path, status = line.split(" ")
            name = Path(path).stem
            current = None if status == "ERROR" else {}
            results[name] = current
        elif line.startswith("K "):
            key = _units(line)
        elif line.startswith("V "):
            assert current is not None
            current[key] = _units(line)
    return results


def _python_load(data: bytes) -> dict[str, str] | None:
    try:
        return javaprops.load(data)
    except javaprops.PropertiesError:
        return None


def test_java_properties_loads_the_same_values(tmp_path: Path) -> None:
    java = _java_loads(tmp_path, SAMPLES)
    assert set(java) == set(SAMPLES)
    for name, data in SAMPLES.items():
        assert _python_load(data) == java[name], name
    # The samples do exercise the failure path, on both sides.
    assert java["malformed_short_u"] is None
    assert java["empty_things"] == {"alone": "", "empty": "", "": ""}
    assert java["password_ends_in_backslash"] == {
        "IbLoginId": "edemo",
        "IbPassword": "secretTradingMode=paper",
    }


def test_java_properties_loads_back_what_dump_wrote(tmp_path: Path) -> None:
    java = _java_loads(tmp_path, {"dumped": javaprops.dump(DUMPED)})
    assert java["dumped"] == dict(DUMPED)
