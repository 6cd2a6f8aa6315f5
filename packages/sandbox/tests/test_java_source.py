"""Java's source file name and entry class read from hostile code: only a plain identifier
names a file."""

from __future__ import annotations

import pytest

from corral_sandbox.java_source import MAX_NAME_BYTES, source_and_entry, top_level_types


def test_a_public_class_names_the_file_and_runs() -> None:
    assert source_and_entry("public class HelloWorld { public static void main(String[] a) {} }", "Main") == (
        "HelloWorld.java",
        "HelloWorld",
    )


def test_without_a_public_class_main_is_kept_and_the_first_class_runs() -> None:
    assert source_and_entry("class Helper {}\nclass Solution { }", "Main") == ("Main.java", "Helper")
    assert source_and_entry("class Helper {}\nclass Main { }", "Main") == ("Main.java", "Main")
    assert source_and_entry("", "Main") == ("Main.java", "Main")


def test_names_in_comments_strings_text_blocks_and_bodies_are_not_taken() -> None:
    code = (
        '// public class Evil {}\n/* public class Worse {} */\nimport java.util.*;\n'
        '@SuppressWarnings({"unchecked"}) public final class Real {\n'
        '  String s = "public class InString {"; char c = \'{\'; String t = """\n public class Block {\n""";\n'
        '  public static class Inner {} public static void main(String[] a) {} }\n'
        'class Other {}\n'
    )
    assert top_level_types(code) == [("Real", True), ("Other", False)]
    assert source_and_entry(code, "Main") == ("Real.java", "Real")


@pytest.mark.parametrize(
    "hostile",
    [
        "public class ../../etc/passwd {}",
        "public class a/b {}",
        "public class " + "A" * (MAX_NAME_BYTES + 1) + " {}",
        "public class \0x {}",
        "public class class {}",
        "public class 9lives {}",
        "public class -rf {}",
    ],
)
def test_a_hostile_name_never_chooses_a_path(hostile: str) -> None:
    source, entry = source_and_entry(hostile, "Main")
    assert "/" not in source and ".." not in source and "\0" not in source and len(source.encode()) <= MAX_NAME_BYTES + 5
    assert source == f"{entry}.java" or source == "Main.java"
    assert source.removesuffix(".java").replace("$", "_").isidentifier()


def test_an_unterminated_comment_or_string_ends_the_scan() -> None:
    assert source_and_entry("/* public class A {}", "Main") == ("Main.java", "Main")
    assert source_and_entry('class X { String s = "', "Main") == ("Main.java", "X")
