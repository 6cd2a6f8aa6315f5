"""Which file a Java program is written to, and which class runs: read from its source.

javac insists that a public top-level class lives in a file of its own name, and clients write
`public class HelloWorld` or `Solution` as often as `Main` (Piston runs Java in source-file
mode, where any name goes). So the source is written to `<public class>.java` and the class run
is that public class; without one, a class `Main` if the program declares it, else its first
top-level class (the one Java's source-file mode runs).

The code is hostile: the name found is used only when it is a plain Java identifier of bounded
length (no '/', no '.', nothing but letters, digits, '_' and '$'), else the runtime's own file
name and class are kept. The source is scanned once by one regular expression without nested
repetition (comments, string, text-block and character literals skipped, braces counted), so a
class named in a comment or a string is not taken, and the scan is linear in the code: a
hostile megabyte takes under a third of a second (the sandbox runs it in a thread).
"""

from __future__ import annotations

import re

# Bytes of UTF-8 in a class name used as a file name (the file system allows 255 with ".java").
MAX_NAME_BYTES = 128

_TOKENS = re.compile(
    r"""
      //[^\n]*                          # line comment
    | /\*.*?(?:\*/|\Z)                  # block comment (unterminated: the rest)
    | \"\"\".*?(?:(?<!\\)\"\"\"|\Z)     # text block
    | "(?:[^"\\\n]|\\.)*"?              # string literal
    | '(?:[^'\\\n]|\\.)*'?              # character literal
    | (?<![\w$.])(?:class|interface|enum|record)\s+(?P<name>[^\s{<;(]+)   # a type declaration
    | (?P<punct>[{};][{};\s]*)          # braces and semicolons, a run at a time
    """,
    re.DOTALL | re.VERBOSE,
)
_PUBLIC = re.compile(r"(?<![\w$])public(?![\w$])")
_IDENTIFIER = re.compile(r"(?:[^\W\d]|\$)[\w$]*")
# Java's reserved words and literals: never a class name.
_RESERVED = frozenset(
    "abstract assert boolean break byte case catch char class const continue default do double else enum "
    "extends final finally float for goto if implements import instanceof int interface long native new "
    "package private protected public return short static strictfp super switch synchronized this throw "
    "throws transient try void volatile while true false null var yield record sealed permits".split()
)


def top_level_types(code: str) -> list[tuple[str, bool]]:
    """The top-level types the source declares, in order: (name, whether it is public). A name
    is what follows the keyword up to a space, '{', '<', ';' or '(' (plain or not: see
    plain_class_name); it is public when `public` comes between the last brace, semicolon or
    declaration and it. Each character is read once, whatever the code (no backtracking)."""
    found: list[tuple[str, bool]] = []
    depth, since = 0, 0
    for match in _TOKENS.finditer(code):
        punct, name = match.group("punct"), match.group("name")
        if punct is not None:
            depth = max(0, depth + punct.count("{") - punct.count("}"))
        elif name is not None and depth == 0:
            found.append((name, _PUBLIC.search(code, since, match.start()) is not None))
        else:
            continue
        since = match.end()
    return found


def plain_class_name(name: str) -> bool:
    """Whether `name` may name the source file: a Java identifier, short, not a keyword."""
    return (
        _IDENTIFIER.fullmatch(name) is not None
        and name not in _RESERVED
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
    )


def source_and_entry(code: str, default_class: str) -> tuple[str, str]:
    """The file name the code is written to and the class run, `default_class` when the code
    names none usable."""
    types = [(name, public) for name, public in top_level_types(code) if plain_class_name(name)]
    public = next((name for name, is_public in types if is_public), None)
    if public is not None:
        return f"{public}.java", public
    names = [name for name, _ in types]
    entry = default_class if default_class in names or not names else names[0]
    return f"{default_class}.java", entry
