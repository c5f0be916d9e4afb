#!/usr/bin/env python3
"""Generate the synthetic sample corpora of ``data/`` for the quickstart.

This script is the source of truth for these files; edit it and rerun it rather than the files:

- ``sample-ner/train.conll`` and ``sample-ner/dev.conll``: English-like sentences, one
  ``token<TAB>tag`` line per token and a blank line after each sentence, IOB2 tags over the
  entity types PER, LOC, ORG and DATE. The dev set adds sentence templates and names (people,
  places, companies) that never occur in training, so that it measures generalisation.
- ``sample-classify/train.tsv`` and ``sample-classify/dev.tsv``: a ``label<TAB>text`` header,
  then one short lowercase review per line labelled ``positive`` or ``negative``, with negation
  ("not bad" is positive), intensifiers and contrasts ("..., but ..." follows the second clause).

Everything is built from the small lexicons and templates below, written for this project; no
text is taken from a public corpus. The output is byte-identical on every run and on Python
3.10 to 3.13: one ``random.Random`` per file, seeded from ``--seed``, and only lists and tuples
are iterated (never sets or hash-ordered containers). Usage: ``python data/make_samples.py``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from pathlib import Path

# A span is a run of tokens and its entity type (None outside entities).
Span = tuple[list[str], str | None]

# --- NER lexicons: "|" separates entries, a space separates the tokens of one entry. -----------
FIRST = "Anna Maria James John David Sarah Laura Peter Daniel Elena Omar Priya Kenji Amara Lucas \
Sofia Mateo Chloe Hannah Ivan Nadia Tomas Leila Ravi Grace Samuel Mei Yusuf Ingrid Felix Clara \
Diego Fatima Noah Emma Oliver Zara Kwame Aisha Jordan April Victor Rosa Hugo".split()
SURNAME = "Smith Johnson Brown Garcia Miller Davis Lopez Wilson Taylor Moore Martin Lee Walker \
Hall Young King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter \
Evans Turner Okafor Nakamura Kowalski Petrov Haddad Singh Chen Rossi Novak Silva Jensen Murphy \
Fischer Dubois".split()
CITY = "Paris|London|Berlin|Madrid|Rome|Tokyo|Lagos|Nairobi|Cairo|Lima|Toronto|Sydney|Mumbai|\
Seoul|Oslo|Dublin|Lisbon|Vienna|Prague|Warsaw|Chicago|Boston|Denver|New York|Los Angeles|\
San Francisco|Hong Kong|Buenos Aires|Rio de Janeiro|Cape Town|Mexico City|Kuala Lumpur".split("|")
COUNTRY = "France|Germany|Spain|Italy|Japan|Kenya|Nigeria|Egypt|Peru|Canada|Brazil|India|Norway|\
Ireland|Portugal|Poland|Chile|Vietnam|New Zealand|South Korea|South Africa|Costa Rica|Jordan|\
Georgia|Sri Lanka".split("|")
ORG_HEAD = "Northwind Bluefield Silverline Redwood Greenway Ironbridge Brightwater Stonegate \
Highpoint Clearview Oakridge Sunfield Westbrook Eastgate Maple Harbor Summit Falcon Crescent \
Pioneer".split()
ORG_TAIL = "Labs Bank Group Systems Foods Motors Media Energy Airlines Insurance Logistics \
Partners Capital Health Software Studios Telecom Robotics Pharma Holdings".split()
ORG_SINGLE = "Zentrix Veltora Omnitek Kalibra Nuvexa Trivana".split()
MINISTRY = "Health Finance Education Transport Defence".split()

# Held out of training: the dev set draws from these half of the time.
HELD_FIRST = "Tobias Keiko Marisol Bram Anouk Efua Dmitri Solveig Ximena Lorcan Yara Idris".split()
HELD_SURNAME = "Vasquez Lindqvist Varga Thornbury Okonjo Brennan Takahashi Horvath Delacroix \
Mwangi Sorensen Kapoor".split()
HELD_CITY = "Accra|Hanoi|Bogota|Reykjavik|Porto|Montreal|Kyoto|Adelaide|Quito|\
Santo Domingo".split("|")
HELD_COUNTRY = "Ghana|Uruguay|Iceland|Morocco|El Salvador".split("|")
HELD_ORG_HEAD = "Copperfield Lakeshore Windmere Ashford Ravenhill Foxglove Starling".split()
HELD_ORG_SINGLE = "Quorvane Belmira Tessaro".split()

TITLE = "Mr. Ms. Mrs. Dr. Professor".split()
WEEKDAY = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTH = "January February March April May June July August September October November \
December".split()
NUMBER = "two three five ten 12 40 75 250".split()
JOB = "engineer nurse teacher driver designer lawyer chef researcher pilot accountant".split()
ORDINAL = "second third fourth fifth".split()

# --- NER templates. {PER} may add a title (tagged O), {NAME} never does; {DAY} is a date that
# fits after "on", {PERIOD} one after "in". Chatty templates start in lowercase; capitalised
# common words start many others, so that a capital is no sure cue.
NER_TEMPLATES = [
    "{PER} , the chief executive of {ORG} , said on {DAY} that the company would open an "
    "office in {LOC} .",
    "{ORG} reported a loss of {NUM} million dollars in {PERIOD} .",
    "Shares of {ORG} rose {NUM} percent on {DAY} after the deal with {ORG} .",
    "The meeting between {PER} and {PER} took place in {LOC} .",
    "Officials in {LOC} said the road would reopen on {DAY} .",
    "{LOC} will host the summit in {PERIOD} , according to {PER} .",
    "Prime Minister {NAME} arrived in {LOC} on {DAY} for two days of talks .",
    "{PER} joined {ORG} as a {JOB} in {PERIOD} .",
    "Heavy rain closed schools across {LOC} on {DAY} .",
    "Analysts at {ORG} expect prices to fall before {DATE} .",
    "Born in {CITY} , {NAME} moved to {LOC} in {PERIOD} .",
    "According to {ORG} , more than {NUM} people attended the festival .",
    "{ORG} and {ORG} agreed to merge , the companies said on {DAY} .",
    "The new bridge in {CITY} was designed by {PER} .",
    "A spokesperson for {ORG} declined to comment .",
    "Flights from {LOC} to {LOC} were cancelled on {DAY} .",
    "{PER} won the race in {LOC} for the {ORDINAL} time .",
    "Police said a {JOB} from {LOC} was arrested on {DAY} .",
    "I met {NAME} at the airport in {CITY} last {WEEKDAY} .",
    "Did you hear that {PER} quit {ORG} ?",
    "lol {NAME} is in {LOC} again",
    "honestly {ORG} has the worst customer service ever !",
    "So excited to visit {LOC} in {MONTH} !",
    "Going to {CITY} with {NAME} on {WEEKDAY} , anyone want to join ?",
    "My cousin works for {ORG} in {CITY} .",
    "Happy birthday {NAME} !",
    "Thanks {NAME} , see you on {WEEKDAY} .",
    "anyone know a good cafe near {LOC} ?",
    "Who is the new manager at {ORG} ?",
    "When did {PER} move to {LOC} ?",
    "Is {ORG} still hiring in {CITY} ?",
    "What happened in {LOC} on {DAY} ?",
    "The weather was cold and windy all week .",
    "Nobody expected the results to be this close .",
    "Please send me the report before lunch .",
    "Traffic was terrible this morning , so I took the train .",
    "Prices went up again and nobody is happy about it .",
    "Bank officials refused to answer questions .",
    "Summit talks ended without a deal .",
    "Harbor traffic was slow because of the storm .",
    "The award went to {PER}",
    "We are flying to {LOC}",
    "The contract was signed with {ORG}",
    "The report is due on {DAY}",
    "{NAME} says hi",
    "Greetings from {CITY}",
    "Yesterday the board of {ORG} met in {CITY} to discuss the budget .",
    "Can someone tell {NAME} that the {JOB} from {ORG} called ?",
]
# Only in the dev set: unseen contexts.
NER_DEV_TEMPLATES = [
    "{PER} , who grew up in {LOC} , now leads the research team at {ORG} .",
    "On {DAY} , {ORG} announced plans to hire {NUM} workers in {LOC} .",
    "Do you think {PER} will sign with {ORG} before {DATE} ?",
    "The mayor of {CITY} , {NAME} , opened the new library .",
    "just landed in {CITY} , text me {NAME}",
    "Workers at {ORG} went on strike in {PERIOD} .",
    "Earlier {PER} told reporters that {LOC} needs more trains .",
    "Nothing much happened at the office today .",
]


class _Lexicon:
    """Entity generators for one split; the dev one mixes in the held-out lists."""

    def __init__(self, rng: random.Random, dev: bool) -> None:
        self.rng = rng
        self.dev = dev

    def _pick(self, seen: Sequence[str], held: Sequence[str]) -> str:
        if self.dev and self.rng.random() < 0.5:
            return self.rng.choice(held)
        return self.rng.choice(seen)

    def first(self) -> str:
        return self._pick(FIRST, HELD_FIRST)

    def surname(self) -> str:
        return self._pick(SURNAME, HELD_SURNAME)

    def name(self) -> list[Span]:
        if self.rng.random() < 0.7:
            return [([self.first(), self.surname()], "PER")]
        return [([self.first()], "PER")]

    def person(self) -> list[Span]:
        r = self.rng.random()
        if r < 0.6:
            return self.name()
        if r < 0.72:
            return [([self.surname()], "PER")]
        if r < 0.9:
            # As in CoNLL-2003, titles are not part of the name.
            return [([self.rng.choice(TITLE)], None), ([self.surname()], "PER")]
        return [([self.first()[0] + ".", self.surname()], "PER")]

    def city(self) -> list[Span]:
        return [(self._pick(CITY, HELD_CITY).split(), "LOC")]

    def location(self) -> list[Span]:
        if self.rng.random() < 0.6:
            return self.city()
        return [(self._pick(COUNTRY, HELD_COUNTRY).split(), "LOC")]

    def organisation(self) -> list[Span]:
        r = self.rng.random()
        if r < 0.7:
            words = [self._pick(ORG_HEAD, HELD_ORG_HEAD), self.rng.choice(ORG_TAIL)]
        elif r < 0.82:
            words = [self._pick(ORG_SINGLE, HELD_ORG_SINGLE)]
        elif r < 0.94:
            # A place name inside an organisation: the context decides the type.
            words = ["University", "of", *self.city()[0][0]]
        else:
            words = ["Ministry", "of", self.rng.choice(MINISTRY)]
        return [(words, "ORG")]

    def date(self, shape: str = "DATE") -> list[Span]:
        """A date; DAY fits after "on", PERIOD after "in", DATE anywhere."""
        rng = self.rng
        month, year = rng.choice(MONTH), str(rng.randrange(1990, 2025))
        day, weekday = str(rng.randrange(1, 29)), rng.choice(WEEKDAY)
        days = [[weekday], [day, month], [month, day], [day, month, year]]
        periods = [[month], [month, year], [year]]
        forms = {"DAY": days, "PERIOD": periods, "DATE": days + periods}[shape]
        return [(rng.choice(forms), "DATE")]

    def slot(self, name: str) -> list[Span]:
        rng = self.rng
        fillers = {"NUM": NUMBER, "JOB": JOB, "ORDINAL": ORDINAL}
        if name in fillers:
            return [([rng.choice(fillers[name])], None)]
        if name in ("WEEKDAY", "MONTH"):
            return [([rng.choice(WEEKDAY if name == "WEEKDAY" else MONTH)], "DATE")]
        if name in ("DAY", "PERIOD", "DATE"):
            return self.date(name)
        generators: dict[str, Callable[[], list[Span]]] = {
            "PER": self.person, "NAME": self.name, "LOC": self.location, "CITY": self.city,
            "ORG": self.organisation,
        }  # fmt: skip
        return generators[name]()


def ner_sentence(
    rng: random.Random, lexicon: _Lexicon, template: str
) -> tuple[list[str], list[str]]:
    """Fill one NER template; return its tokens and IOB2 tags."""
    chatty = template[0].islower()
    tokens: list[str] = []
    tags: list[str] = []
    for word in template.split():
        spans = lexicon.slot(word[1:-1]) if word.startswith("{") else [([word], None)]
        for words, kind in spans:
            if kind and chatty and rng.random() < 0.3:
                words = [w.lower() for w in words]  # people type names in lowercase when chatting
            for i, w in enumerate(words):
                tokens.append(w)
                tags.append("O" if kind is None else ("B-" if i == 0 else "I-") + kind)
    if rng.random() < 0.06:
        tokens = [t.lower() for t in tokens]  # some all-lowercase text: casing is not a sure cue
    return tokens, tags


def make_ner(rng: random.Random, n: int, dev: bool) -> list[tuple[list[str], list[str]]]:
    """Generate ``n`` tagged sentences (the dev set with held-out templates and names)."""
    lexicon = _Lexicon(rng, dev)
    templates = NER_TEMPLATES + NER_DEV_TEMPLATES if dev else NER_TEMPLATES
    return [ner_sentence(rng, lexicon, rng.choice(templates)) for _ in range(n)]


# --- Classification lexicons (all lowercase; contractions split as in SST-2: "is n't"). --------
POS_ADJ = "good great excellent wonderful fantastic enjoyable charming brilliant solid impressive \
delightful lovely superb fun".split()
NEG_ADJ = "bad terrible awful boring disappointing dull poor mediocre weak annoying clumsy \
forgettable flimsy painful".split()
INTENSIFIER = "very really so extremely incredibly truly quite remarkably".split()
# Before a noun "a so good film" and "a quite good film" are not English.
ATTRIBUTIVE = [w for w in INTENSIFIER if w not in ("so", "quite")]
NEGATOR = ["not", "not", "n't", "never"]  # always right after "is"/"was" in the templates
POS_VERB = "loved|liked|enjoyed|adored|really liked|absolutely loved|\
did n't expect to love".split("|")
NEG_VERB = "hated|disliked|did n't like|did not enjoy|could not stand|really disliked|\
wanted to like".split("|")
POS_REC = "would recommend it|highly recommended|worth every penny|five stars|\
ten out of ten".split("|")
NEG_REC = "would not recommend it|avoid it|a waste of money|one star|never again".split("|")
RELATIVE = "my sister|my dad|my friend|the kids|my wife|my roommate|my husband".split("|")
# (items, aspects, neutral fillers) per domain.
DOMAINS = (
    (
        "movie film sequel documentary show series thriller comedy".split(),
        "the acting|the plot|the soundtrack|the ending|the dialogue|the cast|the pacing|"
        "the camera work".split("|"),
        "i watched it with my family|we saw it on a friday night|it came out last year|"
        "i streamed it at home|we went to the late showing".split("|"),
    ),
    (
        "phone laptop blender speaker charger kettle backpack camera keyboard vacuum".split(),
        "the battery|the screen|the price|the sound|the design|the delivery|the manual|"
        "the build quality".split("|"),
        "i bought it last month|it was a gift from my aunt|i ordered it online|"
        "we have used it for two weeks|i got it on sale".split("|"),
    ),
)
# {op}: opinion after "is"/"was" with the label's polarity (maybe negated); {anti}: the opposite;
# {aop}: attributive opinion (no negation); {adj}/{antiadj}: a bare adjective.
CLASSIFY_TEMPLATES = [
    "the {item} {is} {op} .",
    "this {item} {is} {op} !",
    "{aspect} {is} {op} .",
    "{aspect} {is} {anti} , but {aspect} {is} {op} .",
    "even though {aspect} {is} {anti} , the {item} {is} {op} .",
    "i {verb} this {item} .",
    "{relative} {verb} the {item} .",
    "{aop} {item} .",
    "a {aop} {item} , {rec} .",
    "what a {aop} {item} !",
    "honestly , {aspect} {is} {op} .",
    "{filler} , and {aspect} {is} {op} .",
    "{filler} . it {is} {op} .",
    "overall , a {aop} {item} .",
    "{aspect} {is} {op} , {rec} .",
    "how {is} this {item} so {adj} ?",
    "not {antiadj} at all .",
    "{aspect} {is} {op} and {aspect} {is} {op} too .",
    "it {is} {op} .",
    "{rec} . {aspect} {is} {op} .",
    "i think the {item} {is} {op} .",
    "the {item} {is} {op} , and {relative} agrees .",
]


def _opinion(rng: random.Random, positive: bool, negate: bool = True) -> list[str]:
    # A negator flips the adjective's polarity: "not bad" is positive, "not very good" negative.
    negated = negate and rng.random() < 0.3
    words = [rng.choice(NEGATOR)] if negated else []
    if rng.random() < 0.35:
        words.append(rng.choice(INTENSIFIER if negate else ATTRIBUTIVE))
    words.append(rng.choice(POS_ADJ if positive != negated else NEG_ADJ))
    return words


def review(rng: random.Random, positive: bool) -> list[str]:
    """Fill one review template so that its sentiment is ``positive`` (else negative)."""
    items, aspects, fillers = rng.choice(DOMAINS)
    tense = rng.choice(["is", "was"])  # one tense per review
    slots: dict[str, Callable[[], list[str]]] = {
        "item": lambda: [rng.choice(items)],
        "aspect": lambda: rng.choice(aspects).split(),
        "filler": lambda: rng.choice(fillers).split(),
        "relative": lambda: rng.choice(RELATIVE).split(),
        "is": lambda: [tense],
        "op": lambda: _opinion(rng, positive),
        "anti": lambda: _opinion(rng, not positive),
        "aop": lambda: _opinion(rng, positive, negate=False),
        "adj": lambda: [rng.choice(POS_ADJ if positive else NEG_ADJ)],
        "antiadj": lambda: [rng.choice(NEG_ADJ if positive else POS_ADJ)],
        "verb": lambda: rng.choice(POS_VERB if positive else NEG_VERB).split(),
        "rec": lambda: rng.choice(POS_REC if positive else NEG_REC).split(),
    }
    words: list[str] = []
    for word in rng.choice(CLASSIFY_TEMPLATES).split():
        words.extend(slots[word[1:-1]]() if word.startswith("{") else [word])
    # "a" before a vowel-initial word ("a awful film") becomes "an".
    return [
        "an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou" else w
        for i, w in enumerate(words)
    ]


def make_reviews(rng: random.Random, n: int) -> list[tuple[str, list[str]]]:
    """Generate ``n`` labelled reviews; labels are drawn with equal odds."""
    out = []
    for _ in range(n):
        positive = rng.random() < 0.5
        out.append(("positive" if positive else "negative", review(rng, positive)))
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Explicit UTF-8 and "\n" so that the bytes do not depend on the platform.
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# (relative path, size[, dev split], offset of its random stream): one stream per file, so that
# changing one file's recipe leaves the others as they are.
NER_FILES = (("sample-ner/train.conll", 1500, False, 1), ("sample-ner/dev.conll", 300, True, 2))
CLASSIFY_FILES = (("sample-classify/train.tsv", 1500, 3), ("sample-classify/dev.tsv", 300, 4))


def write_samples(out: Path, seed: int = 13) -> dict[str, tuple[int, int]]:
    """Write the four sample files under ``out``; return ``{relative path: (items, tokens)}``."""
    counts: dict[str, tuple[int, int]] = {}
    for relative, n, dev, offset in NER_FILES:
        sentences = make_ner(random.Random(seed * 100 + offset), n, dev)
        blocks = [
            "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags, strict=True))
            for tokens, tags in sentences
        ]
        _write(out / relative, "\n".join(blocks) + "\n")
        counts[relative] = (len(sentences), sum(len(tokens) for tokens, _ in sentences))
    for relative, n, offset in CLASSIFY_FILES:
        reviews = make_reviews(random.Random(seed * 100 + offset), n)
        lines = ["label\ttext\n"] + [f"{label}\t{' '.join(words)}\n" for label, words in reviews]
        _write(out / relative, "".join(lines))
        counts[relative] = (len(reviews), sum(len(words) for _, words in reviews))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the sample corpora and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent,
        help="folder to write into (default: the folder of this script)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=13, help="random seed (default: 13)")
    args = parser.parse_args(argv)
    for relative, (items, tokens) in write_samples(args.out, args.seed).items():
        unit = "sentences" if relative.endswith(".conll") else "lines"
        print(f"{args.out / relative}: {items} {unit}, {tokens} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
