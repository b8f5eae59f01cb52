"""`.include` / `.inc` and `.lib FILE SECTION`: the cards of a netlist and of every file it reads.

As ngspice does:

* `.include FILE` (or `.inc`) reads FILE's cards in place; FILE may be quoted (`"a b.lib"` or
  `'a.lib'`) and is relative to the folder of the file that names it (an absolute path stays).
  An included file has no title line: its first line is a card.
* `.lib FILE SECTION` reads only the block `.lib SECTION` ... `.endl` of FILE (section names
  are case-insensitive). A `.lib NAME` ... `.endl` block in any file is a section definition:
  it is skipped where it stands and read only when a `.lib FILE NAME` asks for it.
* Includes nest (an included file or section may include others); a file that includes itself,
  directly or through others, is an include cycle and a named error.

Every card keeps where it came from: its line number is a `Line` (an `int` that also carries
its `file` and the `chain` of includes that led to it), so every later error about the card
(`NetlistError(message, file, line)`) names the included file, its line, and the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NetlistError
from .cards import Card, logical_cards
from .values import decode

Chain = tuple[tuple[str, int], ...]

MAX_DEPTH = 32          # nested includes


class Line(int):
    """A line number that knows its file and the includes that led there.

    `Line(4, "models.lib", (("amp.cir", 3),))` is line 4 of models.lib, included from line 3
    of amp.cir; it is an `int` everywhere else (comparisons, arithmetic, JSON).
    """

    file: str
    chain: Chain

    def __new__(cls, number: int, file: str, chain: Chain = ()) -> Line:
        obj = super().__new__(cls, number)
        obj.file = file
        obj.chain = chain
        return obj

    def __reduce__(self):
        return (Line, (int(self), self.file, self.chain))

    def __repr__(self) -> str:
        return f"Line({int(self)}, {self.file!r})"

    def __str__(self) -> str:           # the number, as an int prints (in f-strings too)
        return str(int(self))

    __format__ = int.__format__


@dataclass
class Expanded:
    """A netlist with its includes read: the title, the cards in reading order (each line a
    `Line`), and every file read as (path, text), the top file first."""

    title: str
    cards: list[Card]
    files: list[tuple[str, str]] = field(default_factory=list)
    #: the top file's physical line numbers that hold an include, with the resolved path
    #: (what `deck_text` rewrites so that ngspice finds the files from any folder)
    top_includes: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: every include card read, in any file: (file, line) -> (resolved path, section or "")
    include_lines: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The top text and the text of every file read, in order: what a cache must hash."""
        return "\n".join(f"*** file {path}\n{text}" for path, text in self.files)


def _fail_in(file: str, chain: Chain, offset: int):
    def fail(message: str, line: int | None, text: str = "") -> NetlistError:
        at = None if line is None else Line(int(line) - offset, file, chain)
        return NetlistError(message, file, at, text)
    return fail


def split_target(text: str, fail, line) -> tuple[str, list[str]]:
    """The file name of an include card (quoted or not) and the words after it."""
    parts = text.split(None, 1)
    rest = parts[1].strip() if len(parts) > 1 else ""
    if not rest:
        raise fail(f"`{parts[0]}` needs a file name", line, text)
    if rest[0] in "\"'":
        close = rest.find(rest[0], 1)
        if close < 0:
            raise fail(f"the file name {rest} has no closing quote", line, text)
        return rest[1:close], rest[close + 1:].split()
    words = rest.split()
    return words[0], words[1:]


class _Expander:
    def __init__(self, folder: Path | None):
        self.folder = folder
        self.files: list[tuple[str, str]] = []
        self.cache: dict[Path, tuple[str, str]] = {}
        self.top_includes: dict[int, tuple[str, str]] = {}
        self.include_lines: dict[tuple[str, int], tuple[str, str]] = {}

    @staticmethod
    def resolve(name: str, folder: Path | None) -> Path:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = (folder or Path.cwd()) / path
        return path

    def load(self, path: Path, shown: str, line, text: str, fail) -> str:
        key = path.resolve() if path.exists() else path
        if key in self.cache:
            return self.cache[key][1]
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = "no such file" if not path.exists() else exc.strerror
            raise fail(f"cannot read the included file {shown!r} ({reason}; looked for "
                       f"{path})", line, text) from None
        content = decode(data, str(path))
        self.cache[key] = (str(path), content)
        self.files.append((str(path), content))
        return content

    def cards_of(self, content: str, file: str, chain: Chain) -> list[Card]:
        """An included file's cards: no title, lines numbered as in the file."""
        fail = _fail_in(file, chain, 1)
        cards = logical_cards("*\n" + content, fail)
        return [(Line(ln - 1, file, chain), kind, tx) for ln, kind, tx in cards
                if kind != "title"]

    def splice(self, cards: list[Card], file: str, folder: Path | None, chain: Chain,
               stack: tuple[tuple[str, str], ...], out: list[Card], top: bool = False) -> None:
        """Append `cards` to `out`, reading each include in place and skipping `.lib` blocks."""
        fail = _fail_in(file, chain, 0)
        i = 0
        while i < len(cards):
            line, kind, text = cards[i]
            word = text.split()[0].lower() if kind == "card" and text.split() else ""
            if word == ".lib" and len(text.split()) == 2 and self.has_end(cards, i):
                i = self.skip_section(cards, i, fail)       # a section definition
                continue
            if word in (".include", ".inc", ".lib"):
                self.include(line, text, word, file, folder, chain, stack, out, top)
            elif word == ".endl":
                raise fail("`.endl` without a `.lib SECTION` to close", line, text)
            else:
                out.append((line, kind, text))
            i += 1

    @staticmethod
    def has_end(cards: list[Card], i: int) -> bool:
        """Whether a `.endl` follows card i (a `.lib NAME` block; without one, `.lib FILE` is
        LTspice's whole-file include)."""
        return any(c[1] == "card" and c[2].split()[0].lower() == ".endl" for c in cards[i + 1:])

    @staticmethod
    def skip_section(cards: list[Card], i: int, fail) -> int:
        line, _, text = cards[i]
        for j in range(i + 1, len(cards)):
            words = cards[j][2].split()
            if cards[j][1] == "card" and words and words[0].lower() == ".endl":
                return j + 1
        raise fail(f"`.lib {text.split()[1]}` starts a library section without `.endl`",
                   line, text)

    def include(self, line, text: str, word: str, file: str, folder: Path | None, chain: Chain,
                stack: tuple[tuple[str, str], ...], out: list[Card], top: bool) -> None:
        fail = _fail_in(file, chain, 0)
        name, after = split_target(text, fail, line)
        section = None
        if word == ".lib" and after:
            if len(after) != 1:
                raise fail("`.lib` reads one section of a library file: write "
                           "`.lib FILE SECTION`", line, text)
            section = after[0].lower()
        elif after:
            raise fail(f"`{word}` takes one file name; quote a name with spaces", line, text)
        if len(chain) >= MAX_DEPTH:
            raise fail(f"includes nested more than {MAX_DEPTH} deep", line, text)
        path = self.resolve(name, folder)
        key = (str(path.resolve()) if path.exists() else str(path), section or "")
        if key in stack:
            cycle = " -> ".join(Path(p).name + (f" [{s}]" if s else "") for p, s in
                                [*stack[stack.index(key):], key])
            raise fail(f"include cycle: {cycle}; a file cannot include itself", line, text)
        content = self.load(path, name, line, text, fail)
        self.include_lines[(file, int(line))] = (str(path.resolve()), section or "")
        if top:
            self.top_includes[int(line)] = (str(path.resolve()), section or "")
        inner_chain = ((file, int(line)), *chain)
        cards = self.cards_of(content, str(path), inner_chain)
        if section is not None:
            cards = self.section(cards, section, name, line, text, fail)
        self.splice(cards, str(path), path.parent, inner_chain, (*stack, key), out)

    @staticmethod
    def section(cards: list[Card], section: str, name: str, line, text: str,
                fail) -> list[Card]:
        found: list[str] = []
        for i, (_, kind, tx) in enumerate(cards):
            words = tx.split()
            if kind == "card" and len(words) == 2 and words[0].lower() == ".lib":
                found.append(words[1])
                if words[1].lower() == section:
                    for j in range(i + 1, len(cards)):
                        w = cards[j][2].split()
                        if w and w[0].lower() == ".endl":
                            return cards[i + 1:j]
                    raise fail(f"section {words[1]} of {name} has no `.endl`", line, text)
        known = ", ".join(found) if found else "none: it has no `.lib NAME` ... `.endl` blocks"
        raise fail(f"library {name} has no section {section!r} (its sections: {known})",
                   line, text)


def expand(text: str, file: str, folder: str | Path | None = None) -> Expanded:
    """Read `text` (the netlist `file`) with its includes; `folder` is where relative include
    paths start (default: the folder of `file`)."""
    base = Path(folder) if folder is not None else Path(file).parent
    expander = _Expander(base)
    fail = _fail_in(file, (), 0)
    cards = logical_cards(text, fail)
    title = cards[0][2] if cards and cards[0][1] == "title" else ""
    body = [(Line(ln, file), kind, tx) for ln, kind, tx in cards if kind != "title"]
    expander.files.append((file, text))
    top_key = str(Path(file).resolve()) if Path(file).exists() else file
    out: list[Card] = []
    expander.splice(body, file, base, (), ((top_key, ""),), out, top=True)
    return Expanded(title, out, expander.files, expander.top_includes, expander.include_lines)


def include_card(path: str, section: str = "") -> str:
    """The include card that reads `path` (its `section`, if any) from any folder."""
    keyword = ".lib" if section else ".include"   # LTspice's `.lib FILE`: all of it
    return f'{keyword} "{path}" {section}'.rstrip()


def deck_text(text: str, expanded: Expanded) -> str:
    """`text` with each top-level include naming its file by absolute path, so that ngspice
    reads the same files when the deck runs in another folder (line numbers unchanged)."""
    lines = text.splitlines()
    for number, (path, section) in expanded.top_includes.items():
        k = number - 1
        if 0 <= k < len(lines):
            lines[k] = include_card(path, section)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")

