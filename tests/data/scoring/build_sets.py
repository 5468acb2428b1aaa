"""Build questions.jsonl, risk_questions.jsonl and summaries.jsonl of this folder (see SOURCES.md).

    python3 tests/data/scoring/build_sets.py

Stdlib only (plus the stdlib-only judge ``harness/eval_sets.py``), deterministic (fixed seed,
no time stamps, no network): rerunning it rewrites questions.jsonl, risk_questions.jsonl and
summaries.jsonl byte for byte. Run from anywhere; paths are relative to this file.

* questions.jsonl: arithmetic drawn with a fixed seed, and facts written out below as
  literal tables, each with all its common spellings.
* risk_questions.jsonl: about 400 more questions made the same way (arithmetic from a second
  seed, facts from the RISK_ tables), none shared with questions.jsonl: more data for fitting
  and testing the uncertainty risk.
* summaries.jsonl: passages of tests/data/corpus/human.jsonl, each with one extractive
  (faithful) summary and one copy of it with exactly one injected error.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
CORPUS = HERE.parent / "corpus" / "human.jsonl"
SEED = 20240917
RISK_SEED = 20250612  # risk_questions.jsonl arithmetic: its own stream, so questions.jsonl stays as it was

sys.path.insert(0, str(REPO))
from harness.eval_sets import fold, is_correct  # noqa: E402  (stdlib only, shared with the evaluation)

# ---------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_answers(value: int) -> list[str]:
    """Digits, with a thousands comma from 1,000, and the English words up to 99."""
    answers = [str(value)]
    if value >= 1000:
        answers.append(f"{value:,}")
    if value < 20:
        answers.append(ONES[value])
    elif value < 100:
        tens, ones = divmod(value, 10)
        answers += [TENS[tens]] if ones == 0 else [f"{TENS[tens]}-{ONES[ones]}", f"{TENS[tens]} {ONES[ones]}"]
    return answers


# category: (how many, first operand range, second operand range, operator)
ARITHMETIC = {
    "add_1digit": (20, (1, 9), (1, 9), "+"),
    "mul_1digit": (8, (2, 9), (2, 9), "times"),
    "add_2digit": (10, (10, 99), (10, 99), "+"),
    "sub_2digit": (8, (20, 99), (10, 99), "-"),
    "mul_2x1digit": (6, (11, 99), (3, 9), "times"),
    "add_3digit": (8, (100, 999), (100, 999), "+"),
    "sub_3digit": (5, (200, 999), (100, 999), "-"),
    "mul_2x2digit": (5, (11, 99), (11, 99), "times"),
}
OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}


def arithmetic_questions(
    rng: random.Random,
    table: dict[str, tuple[int, tuple[int, int], tuple[int, int], str]] = ARITHMETIC,
    taken: set[tuple[str, frozenset[int]]] | None = None,
    id_infix: str = "",
) -> list[dict]:
    """Distinct operand pairs; a difference is positive; the result is never an operand (an
    answer that only repeats the question must not count as right). ``taken``: (operator,
    unordered operands) pairs that must not be drawn (another file's); the drawn ones are added
    to it. ``id_infix`` goes before the number: ``add_1digit-r01``."""
    taken = set() if taken is None else taken
    questions = []
    for category, (count, first_range, second_range, operator) in table.items():
        seen: set[frozenset[int]] = set()
        for draw in itertools.count():
            if len(seen) == count:
                break
            if draw == 100_000:  # ample for the last few pairs of add_1digit
                raise ValueError(f"{category}: could not draw {count} new operand pairs")
            a, b = rng.randint(*first_range), rng.randint(*second_range)
            result = OPERATIONS[operator](a, b)
            pair = frozenset((a, b))
            if pair in seen or (operator, pair) in taken or a == b or result <= 0 or result in (a, b):
                continue
            seen.add(pair)
            taken.add((operator, pair))
            questions.append(
                {
                    "id": f"{category}-{id_infix}{len(seen):02d}",
                    "category": category,
                    "question": f"What is {a} {operator} {b}?",
                    "answers": number_answers(result),
                }
            )
    return questions


_ARITHMETIC_QUESTION = re.compile(r"What is (\d+) (\+|-|times) (\d+)\?")


def operand_pairs(questions: list[dict]) -> set[tuple[str, frozenset[int]]]:
    """(operator, unordered operands) of the arithmetic questions."""
    matches = (_ARITHMETIC_QUESTION.fullmatch(q["question"]) for q in questions)
    return {(m.group(2), frozenset((int(m.group(1)), int(m.group(3))))) for m in matches if m}


# Capitals: only countries with one undisputed capital (no South Africa, Bolivia, Switzerland,
# Israel, Sri Lanka, Tanzania, Côte d'Ivoire, Benin, Burundi, Indonesia, ...) and none named
# like their capital (Djibouti, Kuwait, Panama, ...).
CAPITALS_WELL_KNOWN = {
    "France": ["paris"],
    "Germany": ["berlin"],
    "Italy": ["rome", "roma"],
    "Spain": ["madrid"],
    "Japan": ["tokyo"],
    "China": ["beijing", "peking"],
    "Russia": ["moscow", "moskva"],
    "the United Kingdom": ["london"],
    "Egypt": ["cairo"],
    "Canada": ["ottawa"],
    "Australia": ["canberra"],
    "Brazil": ["brasília", "brasilia"],
    "Argentina": ["buenos aires"],
    "India": ["new delhi"],
    "Greece": ["athens", "athina"],
    "Portugal": ["lisbon", "lisboa"],
    "Austria": ["vienna", "wien"],
    "Sweden": ["stockholm"],
    "Norway": ["oslo"],
    "Poland": ["warsaw", "warszawa"],
    "Turkey": ["ankara"],
    "South Korea": ["seoul"],
    "Thailand": ["bangkok"],
    "Kenya": ["nairobi"],
    "Peru": ["lima"],
    "Cuba": ["havana", "la habana"],
    "Nigeria": ["abuja"],
    "Pakistan": ["islamabad"],
    "New Zealand": ["wellington"],
    "the United States": ["washington", "washington, d.c.", "washington dc"],
}
CAPITALS_OBSCURE = {
    "Mongolia": ["ulaanbaatar", "ulan bator", "ulaan baatar", "ulan-bator"],
    "Kazakhstan": ["astana", "nur-sultan", "nur sultan"],  # named Nur-Sultan 2019-2022
    "Kyrgyzstan": ["bishkek"],
    "Tajikistan": ["dushanbe"],
    "Turkmenistan": ["ashgabat", "ashkhabad", "ashgabad"],
    "Uzbekistan": ["tashkent", "toshkent"],
    "Bhutan": ["thimphu"],
    "Laos": ["vientiane"],
    "Cambodia": ["phnom penh"],
    "Burkina Faso": ["ouagadougou"],
    "Mali": ["bamako"],
    "Niger": ["niamey"],
    "Chad": ["n'djamena", "ndjamena", "n'djaména"],
    "Mauritania": ["nouakchott"],
    "Eritrea": ["asmara", "asmera"],
    "Malawi": ["lilongwe"],
    "Zambia": ["lusaka"],
    "Botswana": ["gaborone"],
    "Namibia": ["windhoek"],
    "Madagascar": ["antananarivo"],
    "Rwanda": ["kigali"],
    "Suriname": ["paramaribo"],
    "Paraguay": ["asunción", "asuncion"],
    "Honduras": ["tegucigalpa"],
    "Latvia": ["riga"],
    "Lithuania": ["vilnius"],
    "Slovenia": ["ljubljana"],
    "Moldova": ["chișinău", "chisinau", "kishinev"],
    "Bahrain": ["manama"],
    "Vanuatu": ["port vila", "port-vila"],
}

COUNTS = {
    "How many days are there in a week?": 7,
    "How many legs does a spider have?": 8,
    "How many legs does an insect have?": 6,
    "How many months are there in a year?": 12,
    "How many hours are there in a day?": 24,
    "How many minutes are there in an hour?": 60,
    "How many days are there in a leap year?": 366,
    "How many sides does a triangle have?": 3,
    "How many sides does a hexagon have?": 6,
    "How many sides does an octagon have?": 8,
    "How many sides does a pentagon have?": 5,
    "How many planets are there in the Solar System?": 8,
    "How many keys does a standard piano have?": 88,
    "How many strings does a standard guitar have?": 6,
    "How many squares are there on a chessboard?": 64,
    "How many cards are in a standard deck of playing cards, without jokers?": 52,
    "How many states does the United States have?": 50,
    "How many degrees are there in a right angle?": 90,
    "How many hearts does an octopus have?": 3,
    "How many chromosomes are in a normal human body cell?": 46,
}

# Two-letter symbols only: one letter (H, C, O, N, S, K, ...) would match stray letters of an
# answer, and He, In, As, Be, At, No are English words.
CHEMICAL_SYMBOLS = {
    "sodium": "na",
    "iron": "fe",
    "gold": "au",
    "silver": "ag",
    "copper": "cu",
    "lead": "pb",
    "mercury": "hg",
    "tin": "sn",
    "calcium": "ca",
    "chlorine": "cl",
    "zinc": "zn",
    "magnesium": "mg",
}

# Surnames suffice (an answer naming the full name contains them); first names only where the
# surname alone is ambiguous (Mary vs Percy Shelley).
ORWELL = ["orwell", "eric blair", "eric arthur blair"]
TOLSTOY = ["tolstoy", "tolstoi", "tolstoj"]
DOSTOEVSKY = ["dostoevsky", "dostoyevsky", "dostoevski", "dostoyevski", "dostoevskii", "dostojevskij"]
TWAIN = ["twain", "samuel clemens", "samuel langhorne clemens"]
AUTHORS = {
    "Who wrote the play Hamlet?": ["shakespeare"],
    "Who wrote the novel Pride and Prejudice?": ["austen"],
    "Who wrote the novel Nineteen Eighty-Four (1984)?": ORWELL,
    "Who wrote the novel War and Peace?": TOLSTOY,
    "Who wrote the novel Don Quixote?": ["cervantes"],
    "Who wrote the novel Moby-Dick?": ["melville"],
    "Who wrote the book On the Origin of Species?": ["darwin"],
    "Who wrote the novel Crime and Punishment?": DOSTOEVSKY,
    "Who wrote the novel Oliver Twist?": ["dickens"],
    "Who wrote the novel Frankenstein?": ["mary shelley", "mary wollstonecraft shelley"],
    "Who wrote the novel The Hobbit?": ["tolkien"],
    "Who wrote the novel Adventures of Huckleberry Finn?": TWAIN,
    "Who wrote the novel The Great Gatsby?": ["fitzgerald"],
    "Who wrote the novel Les Misérables?": ["victor hugo", "hugo"],
}

YEARS = {
    "In what year did World War II end?": 1945,
    "In what year did World War I begin?": 1914,
    "In what year did World War I end?": 1918,
    "In what year did World War II begin?": 1939,
    "In what year did Apollo 11 land on the Moon?": 1969,
    "In what year did the Berlin Wall fall?": 1989,
    "In what year did the Titanic sink?": 1912,
    "In what year did Christopher Columbus first reach the Americas?": 1492,
    "In what year was the United States Declaration of Independence adopted?": 1776,
    "In what year was the Bastille stormed in Paris?": 1789,
    "In what year was the Battle of Hastings fought?": 1066,
    "In what year did the Soviet Union dissolve?": 1991,
    "In what year was the Battle of Waterloo fought?": 1815,
    "In what year did the Chernobyl nuclear disaster happen?": 1986,
}

GENERAL = {
    "Which planet is the largest in the Solar System?": ["jupiter"],
    "Which planet is closest to the Sun?": ["mercury"],
    "Which planet is known as the Red Planet?": ["mars"],
    "What is the largest ocean on Earth?": ["pacific"],
    "What is the highest mountain on Earth above sea level?": [
        "everest",
        "chomolungma",
        "qomolangma",
        "sagarmatha",
    ],
    "Who painted the Mona Lisa?": ["leonardo", "da vinci"],
    "What is the currency of Japan?": ["yen"],
    "What language is mainly spoken in Brazil?": ["portuguese"],
    "What is the fastest land animal?": ["cheetah"],
    "What gas do plants take in from the air for photosynthesis?": ["carbon dioxide", "co2", "co₂"],
    "Who developed the theory of relativity?": ["einstein"],
    "What is the largest continent by area?": ["asia"],
}


# --- risk_questions.jsonl: more questions of the same kinds, to fit and test the uncertainty risk ---
# Same rules and templates as the tables above; nothing in them repeats a question of questions.jsonl.

# category: how many; operand ranges and operator as in ARITHMETIC. add_1digit and mul_1digit take
# every unordered pair that questions.jsonl leaves (36 - 20 and 28 - 8).
RISK_ARITHMETIC = {
    "add_1digit": 16,
    "mul_1digit": 20,
    "add_2digit": 20,
    "sub_2digit": 20,
    "mul_2x1digit": 18,
    "add_3digit": 20,
    "sub_3digit": 18,
    "mul_2x2digit": 18,
}

# Left out besides the ones above: the Netherlands (Amsterdam / The Hague), Malaysia (Putrajaya),
# Eswatini (Mbabane / Lobamba), Montenegro (Cetinje the "Old Royal Capital"), Yemen and Libya (rival
# governments), Sudan (government in Port Sudan), Palau (Ngerulmud / Melekeok), Nauru (none), Myanmar
# (Naypyidaw since 2006, often still named Yangon), Georgia (also a US state), Mexico, Guatemala,
# Tunisia, Algeria, El Salvador (named like their capital).
RISK_CAPITALS_WELL_KNOWN = {
    "Ireland": ["dublin", "baile átha cliath"],
    "Denmark": ["copenhagen", "københavn", "kobenhavn"],
    "Finland": ["helsinki", "helsingfors"],
    "Belgium": ["brussels", "bruxelles", "brussel"],
    "Hungary": ["budapest"],
    "the Czech Republic": ["prague", "praha"],
    "Ukraine": ["kyiv", "kiev", "kyyiv"],
    "Colombia": ["bogotá", "bogota"],
    "Venezuela": ["caracas"],
    "Chile": ["santiago"],
    "Ethiopia": ["addis ababa", "addis abeba"],
    "Morocco": ["rabat"],
    "Ghana": ["accra"],
    "Afghanistan": ["kabul"],
    "Bangladesh": ["dhaka", "dacca"],
    "Vietnam": ["hanoi", "ha noi", "hà nội"],
    "the Philippines": ["manila"],
    "Iceland": ["reykjavík", "reykjavik"],
    "Romania": ["bucharest", "bucurești", "bucuresti"],
    "Bulgaria": ["sofia", "sofiya"],
    "Serbia": ["belgrade", "beograd"],
    "Croatia": ["zagreb"],
    "Syria": ["damascus"],
    "Lebanon": ["beirut", "beyrouth"],
    "Jordan": ["amman"],
    "Saudi Arabia": ["riyadh", "riyad"],
    "Iran": ["tehran", "teheran"],
    "Iraq": ["baghdad", "bagdad"],
    "North Korea": ["pyongyang"],
    "Ecuador": ["quito"],
    "Uruguay": ["montevideo"],
    "Jamaica": ["kingston"],
    "Senegal": ["dakar"],
    "Zimbabwe": ["harare"],
    "Uganda": ["kampala"],
    "Nepal": ["kathmandu", "katmandu"],
    "Qatar": ["doha"],
    "the United Arab Emirates": ["abu dhabi"],
    "Belarus": ["minsk"],
    "Slovakia": ["bratislava"],
}
RISK_CAPITALS_OBSCURE = {
    "Armenia": ["yerevan", "erevan"],
    "Azerbaijan": ["baku"],
    "Estonia": ["tallinn"],
    "North Macedonia": ["skopje"],
    "Albania": ["tirana", "tiranë", "tirane"],
    "Bosnia and Herzegovina": ["sarajevo"],
    "Malta": ["valletta"],
    "Cyprus": ["nicosia", "lefkosia"],
    "Oman": ["muscat"],
    "Brunei": ["bandar seri begawan"],
    "Papua New Guinea": ["port moresby"],
    "Fiji": ["suva"],
    "Samoa": ["apia"],
    "Tonga": ["nukuʻalofa", "nuku'alofa", "nukualofa"],
    "the Solomon Islands": ["honiara"],
    "Togo": ["lomé", "lome"],
    "Gabon": ["libreville"],
    "Cameroon": ["yaoundé", "yaounde"],
    "Sierra Leone": ["freetown"],
    "Liberia": ["monrovia"],
    "the Gambia": ["banjul"],
    "Guinea": ["conakry"],
    "Mozambique": ["maputo"],
    "Lesotho": ["maseru"],
    "Angola": ["luanda"],
    "the Central African Republic": ["bangui"],
    "the Democratic Republic of the Congo": ["kinshasa"],
    "South Sudan": ["juba"],
    "Somalia": ["mogadishu", "muqdisho"],
    "Nicaragua": ["managua"],
    "Costa Rica": ["san josé", "san jose"],
    "the Dominican Republic": ["santo domingo"],
    "Haiti": ["port-au-prince"],
    "Guyana": ["georgetown"],
    "the Bahamas": ["nassau"],
    "Barbados": ["bridgetown"],
    "Belize": ["belmopan"],
    "Mauritius": ["port louis"],
    "East Timor": ["dili"],
    "Liechtenstein": ["vaduz"],
}

RISK_COUNTS = {
    "How many sides does a heptagon have?": 7,
    "How many sides does a decagon have?": 10,
    "How many sides does a dodecagon have?": 12,
    "How many faces does a cube have?": 6,
    "How many edges does a cube have?": 12,
    "How many vertices does a cube have?": 8,
    "How many seconds are there in a minute?": 60,
    "How many seconds are there in an hour?": 3600,
    "How many minutes are there in a day?": 1440,
    "How many days are there in a year that is not a leap year?": 365,
    "How many days are there in September?": 30,
    "How many letters are there in the English alphabet?": 26,
    "How many years are there in a century?": 100,
    "How many grams are there in a kilogram?": 1000,
    "How many centimetres are there in a metre?": 100,
    "How many stripes are there on the flag of the United States?": 13,
    "How many rings are there in the Olympic symbol?": 5,
    "How many strings does a standard violin have?": 4,
    "How many pawns does each player have at the start of a chess game?": 8,
    "How many players does each team have on the field in association football (soccer)?": 11,
}

RISK_CHEMICAL_SYMBOLS = {
    "lithium": "li",
    "neon": "ne",
    "aluminium": "al",
    "silicon": "si",
    "argon": "ar",
    "chromium": "cr",
    "manganese": "mn",
    "cobalt": "co",
    "nickel": "ni",
    "titanium": "ti",
    "bromine": "br",
    "krypton": "kr",
    "xenon": "xe",
    "platinum": "pt",
    "barium": "ba",
    "radium": "ra",
    "radon": "rn",
    "plutonium": "pu",
    "strontium": "sr",
    "cadmium": "cd",
    "antimony": "sb",
    "selenium": "se",
    "gallium": "ga",
    "germanium": "ge",
    "zirconium": "zr",
    "palladium": "pd",
    "rubidium": "rb",
    "caesium": "cs",
    "iridium": "ir",
    "rhodium": "rh",
}

# Left out: works whose authorship is shared or disputed (The Three Musketeers and The Count of
# Monte Cristo with Maquet, The Communist Manifesto, The Art of War, the Iliad).
RISK_AUTHORS = {
    "Who wrote the play Romeo and Juliet?": ["shakespeare"],
    "Who wrote the novel Anna Karenina?": TOLSTOY,
    "Who wrote the novel The Brothers Karamazov?": DOSTOEVSKY,
    "Who wrote the novel Emma?": ["austen"],
    "Who wrote the book Animal Farm?": ORWELL,
    "Who wrote the novel A Tale of Two Cities?": ["dickens"],
    "Who wrote the novel Great Expectations?": ["dickens"],
    "Who wrote the novel The Lord of the Rings?": ["tolkien"],
    "Who wrote the novel Jane Eyre?": ["charlotte brontë", "charlotte bronte", "currer bell"],
    "Who wrote the novel Wuthering Heights?": ["emily brontë", "emily bronte", "ellis bell"],
    "Who wrote the novel The Adventures of Tom Sawyer?": TWAIN,
    "Who wrote the novel To Kill a Mockingbird?": ["harper lee", "lee"],
    "Who wrote the novel The Catcher in the Rye?": ["salinger"],
    "Who wrote the novel Ulysses?": ["joyce"],
    "Who wrote the novel One Hundred Years of Solitude?": ["garcía márquez", "garcia marquez", "márquez", "marquez"],
    "Who wrote the novel A Farewell to Arms?": ["hemingway"],
    "Who wrote the novel Brave New World?": ["huxley"],
    "Who wrote the novel Dracula?": ["stoker"],
    "Who wrote the novel The Picture of Dorian Gray?": ["wilde"],
    "Who wrote the play The Importance of Being Earnest?": ["wilde"],
    "Who wrote the novel Madame Bovary?": ["flaubert"],
    "Who wrote the novel Around the World in Eighty Days?": ["verne"],
    "Who wrote the novel Treasure Island?": ["stevenson"],
    "Who wrote the novel Robinson Crusoe?": ["defoe"],
    "Who wrote the novel Gulliver's Travels?": ["swift"],
    "Who wrote the novel The War of the Worlds?": ["wells"],
    "Who wrote the novel Lolita?": ["nabokov"],
    "Who wrote the novel Harry Potter and the Philosopher's Stone?": ["rowling"],
    "Who wrote the novel Little Women?": ["alcott"],
    "Who wrote the novel Uncle Tom's Cabin?": ["stowe"],
    "Who wrote the novel The Grapes of Wrath?": ["steinbeck"],
    "Who wrote the novel Fahrenheit 451?": ["bradbury"],
    "Who wrote the novel Catch-22?": ["heller"],
    "Who wrote the play Waiting for Godot?": ["beckett"],
    "Who wrote the play A Doll's House?": ["ibsen"],
    "Who wrote the book A Brief History of Time?": ["hawking"],
    "Who wrote the novel Things Fall Apart?": ["achebe"],
    "Who wrote the novel The Handmaid's Tale?": ["atwood"],
    # first names: George, not T. S. Eliot; Arthur, not Henry Miller
    "Who wrote the novel Middlemarch?": ["george eliot", "mary ann evans", "mary anne evans", "marian evans"],
    "Who wrote the play Death of a Salesman?": ["arthur miller", "miller"],
}

RISK_YEARS = {
    "In what year did the American Civil War begin?": 1861,
    "In what year did the American Civil War end?": 1865,
    "In what year was Abraham Lincoln assassinated?": 1865,
    "In what year did the Wall Street Crash happen?": 1929,
    "In what year was the atomic bomb dropped on Hiroshima?": 1945,
    "In what year did Japan attack Pearl Harbor?": 1941,
    "In what year did the D-Day landings in Normandy take place?": 1944,
    "In what year did the September 11 attacks on the United States happen?": 2001,
    "In what year did Yuri Gagarin become the first person in space?": 1961,
    "In what year was Magna Carta sealed?": 1215,
    "In what year did the Great Fire of London happen?": 1666,
    "In what year was John F. Kennedy assassinated?": 1963,
    "In what year did Nelson Mandela become President of South Africa?": 1994,
    "In what year was Germany reunified?": 1990,
    "In what year did the October Revolution take place in Russia?": 1917,
    "In what year did India gain independence from Britain?": 1947,
    "In what year was the People's Republic of China proclaimed?": 1949,
    "In what year was Sputnik 1 launched?": 1957,
    "In what year did the Space Shuttle Challenger disaster happen?": 1986,
    "In what year was Martin Luther King Jr. assassinated?": 1968,
    "In what year did Napoleon Bonaparte die?": 1821,
    "In what year did Martin Luther publish his Ninety-five Theses?": 1517,
    "In what year did the Spanish Armada sail against England?": 1588,
    "In what year was the Battle of Trafalgar fought?": 1805,
    "In what year did Queen Victoria die?": 1901,
    "In what year did Queen Elizabeth II die?": 2022,
    "In what year was the Treaty of Versailles signed?": 1919,
    "In what year did the Wright brothers make their first powered flight?": 1903,
    "In what year did the Hindenburg airship disaster happen?": 1937,
    "In what year did the Cuban Missile Crisis happen?": 1962,
    "In what year did Constantinople fall to the Ottoman Turks?": 1453,
    "In what year was the Battle of Gettysburg fought?": 1863,
    "In what year did Hurricane Katrina strike New Orleans?": 2005,
    "In what year did the Boston Tea Party take place?": 1773,
    "In what year did the Fukushima nuclear disaster happen?": 2011,
    "In what year was the Eiffel Tower completed?": 1889,
    "In what year did Elvis Presley die?": 1977,
    "In what year was John Lennon killed?": 1980,
    "In what year was the Battle of Agincourt fought?": 1415,
    "In what year did William Shakespeare die?": 1616,
}

# Left out: questions whose answer depends on a definition or has changed (longest river, largest
# desert or lake, most populous country, tallest building, inventor of the telephone or light bulb).
RISK_GENERAL = {
    "Which planet is the smallest in the Solar System?": ["mercury"],
    "Which planet is farthest from the Sun?": ["neptune"],
    "Which planet is famous for its large, bright rings?": ["saturn"],
    "Which planet has the Great Red Spot?": ["jupiter"],
    "Which planet has the hottest surface in the Solar System?": ["venus"],
    "What is the hardest naturally occurring substance?": ["diamond", "diamonds"],
    "What is the chemical formula of water?": ["h2o", "h₂o"],
    "Which gas makes up most of Earth's atmosphere?": ["nitrogen"],
    "Which element has the atomic number 1?": ["hydrogen"],
    "Which metal is liquid at room temperature?": ["mercury"],
    "What is the chemical name of common table salt?": ["sodium chloride", "nacl"],
    "What is the currency of the United Kingdom?": ["pound", "pounds", "sterling"],
    "What is the currency of India?": ["rupee", "rupees"],
    "What is the currency of China?": ["yuan", "renminbi", "rmb"],
    "What is the currency of Russia?": ["ruble", "rubles", "rouble", "roubles"],
    "What is the currency of Switzerland?": ["franc", "francs"],
    "What is the currency of Mexico?": ["peso", "pesos"],
    "What language is mainly spoken in Argentina?": ["spanish"],
    "What language is mainly spoken in Austria?": ["german"],
    "What language is mainly spoken in Egypt?": ["arabic"],
    "What language is mainly spoken in Iran?": ["persian", "farsi"],
    "Who painted The Starry Night?": ["van gogh"],
    "Who painted the ceiling of the Sistine Chapel?": ["michelangelo", "buonarroti"],
    "Who painted Guernica?": ["picasso"],
    "Who painted The Night Watch?": ["rembrandt"],
    "Who sculpted The Thinker?": ["rodin"],
    "Who composed the Moonlight Sonata?": ["beethoven"],
    "Who composed The Four Seasons?": ["vivaldi"],
    "Who composed the opera The Magic Flute?": ["mozart"],
    "Who discovered penicillin?": ["fleming"],
    "Who formulated the three laws of motion?": ["newton"],
    "Who was the first person to walk on the Moon?": ["armstrong"],
    "Who was the first President of the United States?": ["washington"],
    "What is the largest animal on Earth?": ["blue whale", "blue whales"],
    "What is the tallest animal on Earth?": ["giraffe", "giraffes"],
    "What is the largest living bird?": ["ostrich", "ostriches"],
    "Which organ pumps blood through the human body?": ["heart"],
    "What is the longest bone in the human body?": ["femur", "thigh bone", "thighbone"],
    "What is the largest country by area?": ["russia", "russian federation"],
    "What is the smallest country in the world by area?": ["vatican", "vatican city", "holy see"],
}

RISK_FACTS: dict[str, dict] = {
    "capital_well_known": RISK_CAPITALS_WELL_KNOWN,
    "capital_obscure": RISK_CAPITALS_OBSCURE,
    "count": RISK_COUNTS,
    "chemical_symbol": RISK_CHEMICAL_SYMBOLS,
    "author": RISK_AUTHORS,
    "year": RISK_YEARS,
    "general": RISK_GENERAL,
}


FACTS: dict[str, dict] = {
    "capital_well_known": CAPITALS_WELL_KNOWN,
    "capital_obscure": CAPITALS_OBSCURE,
    "count": COUNTS,
    "chemical_symbol": CHEMICAL_SYMBOLS,
    "author": AUTHORS,
    "year": YEARS,
    "general": GENERAL,
}
# category: (key, value) of its table -> (question, accepted answers)
FACT_TEMPLATES: dict[str, Callable[[str, Any], tuple[str, list[str]]]] = {
    "capital_well_known": lambda country, answers: (f"What is the capital of {country}?", answers),
    "capital_obscure": lambda country, answers: (f"What is the capital of {country}?", answers),
    "count": lambda question, number: (question, number_answers(number)),
    "chemical_symbol": lambda element, symbol: (f"What is the chemical symbol of {element}?", [symbol]),
    "author": lambda question, answers: (question, answers),
    "year": lambda question, year: (question, [str(year)]),
    "general": lambda question, answers: (question, answers),
}


def fact_questions(tables: dict[str, dict] = FACTS, id_infix: str = "") -> list[dict]:
    """One question per table row, in table order; ``id_infix`` goes before the number."""
    return [
        {"id": f"{category}-{id_infix}{number:02d}", "category": category, "question": question, "answers": answers}
        for category, table in tables.items()
        for number, (question, answers) in enumerate(
            (FACT_TEMPLATES[category](key, value) for key, value in table.items()), start=1
        )
    ]


def check_questions(questions: list[dict]) -> None:
    """Lower-case, distinct, non-empty answers; no question judged correct by its own text;
    distinct ids and question texts."""
    for question in questions:
        answers = question["answers"]
        assert answers and all(a == a.lower().strip() and a for a in answers), question
        assert len(set(answers)) == len(answers), question
        assert not is_correct(question["question"], answers), f"the question gives the answer away: {question}"
    assert len({q["id"] for q in questions}) == len(questions)
    assert len({fold(q["question"]) for q in questions}) == len(questions)


def build_questions() -> list[dict]:
    questions = arithmetic_questions(random.Random(SEED)) + fact_questions()
    check_questions(questions)
    return questions


def build_risk_questions(questions: list[dict]) -> list[dict]:
    """risk_questions.jsonl: more of the same kinds, none shared with ``questions`` (id, text or,
    for arithmetic, operation and unordered operands)."""
    taken = operand_pairs(questions)
    table = {category: (count, *ARITHMETIC[category][1:]) for category, count in RISK_ARITHMETIC.items()}
    risk = arithmetic_questions(random.Random(RISK_SEED), table, taken, id_infix="r") + fact_questions(
        RISK_FACTS, id_infix="r"
    )
    for question in risk:
        if question["category"] == "count":
            question["answers"] += SPELLED_OUT.get(int(question["answers"][0]), [])
    check_questions(questions + risk)
    assert not operand_pairs(questions) & operand_pairs(risk)
    return risk


# Counts of 100 and more in words, which number_answers leaves out (below 100 only) and the
# embedded model writes ("One-hundred centimetres"). Only for risk_questions.jsonl:
# questions.jsonl stays as bench/scoring_eval's results were judged (its leap-year 366 too).
SPELLED_OUT = {
    100: ["one hundred", "a hundred"],
    365: ["three hundred sixty five", "three hundred and sixty five"],
    1000: ["one thousand", "a thousand"],
    1440: ["one thousand four hundred forty", "one thousand four hundred and forty"],
    3600: ["three thousand six hundred"],
}


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------

NUM_SOURCES = 60
MAX_SOURCE_CHARS = 1200
MIN_SOURCE_CHARS = 400
CORRUPTIONS = ("number", "negation", "entity")

_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf", "dr", "mr", "mrs", "ms", "no", "fig", "approx", "st", "resp", "viz"}
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s)")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: it ends at . ! ? (and closing quotes or brackets) before
    whitespace and a capital, quote or bracket, but not after a listed abbreviation; a blank
    line always ends one."""
    cuts = {match.start() for match in re.finditer(r"\n\s*\n", text)} | {len(text)}
    for match in _SENTENCE_END.finditer(text):
        rest = text[match.end() :].lstrip()
        word = re.search(r"(\S+)$", text[: match.start()])
        before = word.group(1).lstrip("(\"'\u2018\u201c") if word else ""
        if before.lower() in _ABBREVIATIONS or (len(before) == 1 and before.isupper()):  # e.g. / Martin E. Hellman
            continue
        if rest and (rest[0].isupper() or rest[0] in "\"'\u2018\u201c([`"):
            cuts.add(match.end())
    spans, start = [], 0
    for cut in sorted(cuts):
        piece = text[start:cut]
        if piece.strip():
            first = start + len(piece) - len(piece.lstrip())
            spans.append((first, first + len(piece.strip())))
        start = cut
    return spans


def cut_source(text: str) -> tuple[str, list[str]] | None:
    """The longest run of whole sentences from the start that fits MAX_SOURCE_CHARS, and its
    sentences; None when that is under MIN_SOURCE_CHARS or has fewer than 3 sentences."""
    spans = [span for span in sentence_spans(text) if span[1] <= MAX_SOURCE_CHARS]
    if len(spans) < 3 or spans[-1][1] < MIN_SOURCE_CHARS:
        return None
    return text[: spans[-1][1]], [" ".join(text[a:b].split()) for a, b in spans]


def good_sentence(sentence: str) -> bool:
    """A whole prose sentence: starts with a capital letter, ends with a full stop, 6-60 words."""
    words = sentence.split()
    return (
        sentence[0].isupper()
        and sentence.endswith(".")
        and 6 <= len(words) <= 60
        and len(sentence) <= 320
        and not sentence.endswith(("e.g.", "i.e.", "etc."))
    )


def whole(term: str) -> re.Pattern[str]:
    """term as a whole token: not glued to letters, digits or _ on either side."""
    return re.compile(rf"(?<![\w-]){re.escape(term)}(?![\w-])")


# --- number: one integer (or number word) changed to one that the source never mentions ---

_INTEGER = re.compile(r"(?<![\w.,/(\[{|$#:+\-\u2018'`])\d{1,4}(?![\w/)\]}|:+\-\u2019'`])(?![.,]\d)")
# A bound stays true when made looser ("within 5 days" -> "within 8 days", ">= 64" -> ">= 128",
# "two or more" -> "three or more"), so numbers next to these words are left alone.
_BOUND_BEFORE = re.compile(
    r"(greater|less|more|fewer|least|most|up to|over|under|exceed\w*|above|below|max\w*|min\w*|limit\w*|within"
    r"|between|range|than|to|and|through|[<>=]+)\W*$",
    re.IGNORECASE,
)
_BOUND_AFTER = re.compile(
    r"^\W*(or (more|fewer|less|greater|above|below|higher|lower|later|earlier)|and (up|above|over)|to \d|through|\+)",
    re.IGNORECASE,
)
# a number word only where it counts something definite: "one of two approaches", "adds three methods"
_COUNTING_WORDS = set(
    "exactly the of adds add has have takes take returns return introduced introduces uses use contains contain "
    "then requires require all".split()
)


def _a_bound(summary: str, start: int, end: int) -> bool:
    return bool(_BOUND_BEFORE.search(summary[max(0, start - 20) : start]) or _BOUND_AFTER.search(summary[end:]))


NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]
_NUMBER_WORD = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\b", re.IGNORECASE)


def _other_integers(value: int) -> list[int]:
    if 1900 <= value <= 2099:  # a year
        return [value + 2, value - 3, value + 7]
    if value <= 1:
        return [value + 2, value + 1]
    return [value * 2, value + 1, value + 3, value * 10]


def _mentions(summary: str, value: int) -> int:
    """How often the summary names value, in digits (also inside 64-bit, 1/HZ) or in words."""
    words = len(re.findall(rf"\b{ONES[value]}\b", summary, re.IGNORECASE)) if value < len(ONES) else 0
    return len(re.findall(rf"(?<!\d){value}(?!\d)", summary)) + words


def corrupt_number(summary: str, source: str) -> tuple[str, str, str] | None:
    """Only a value that the summary names once: "record five implies records one through four"
    changed to six would still be true, and "64 bits ... the 64-bit value" half-changed is muddled."""
    source_numbers = set(re.findall(r"\d+", source))
    source_words = {word.lower() for word in re.findall(r"[A-Za-z]+", source)}
    for match in _INTEGER.finditer(summary):
        value = int(match.group())
        if match.group() != str(value) or _mentions(summary, value) > 1:  # 0644 is a mode, not a count
            continue
        if _a_bound(summary, match.start(), match.end()):
            continue
        for other in _other_integers(value):
            if str(other) not in source_numbers and (other >= len(ONES) or ONES[other] not in source_words):
                new = summary[: match.start()] + str(other) + summary[match.end() :]
                return new, match.group(), str(other)
    for match in _NUMBER_WORD.finditer(summary):
        old = match.group()
        index = NUMBER_WORDS.index(old.lower())
        previous = re.findall(r"\w+", summary[: match.start()])[-1:]
        if _mentions(summary, ONES.index(old.lower())) > 1 or _a_bound(summary, match.start(), match.end()):
            continue
        if not previous or previous[0].lower() not in _COUNTING_WORDS:
            continue
        for other in NUMBER_WORDS[index + 1 :] + NUMBER_WORDS[:index]:
            if other not in source_words and str(ONES.index(other)) not in source_numbers:
                replacement = other.capitalize() if old[0].isupper() else other
                return summary[: match.start()] + replacement + summary[match.end() :], old, replacement
    return None


# --- negation: "not" inserted after, or removed from, the main clause's first auxiliary ---

_NEGATIONS = re.compile(r"\b(not|no|never|nor|neither|none|nothing|cannot)\b|n't\b", re.IGNORECASE)
# a clause opener before the verb means the verb may sit in a condition or a relative clause
_SUBORDINATORS = set(
    "if when whenever unless whether while although though because since until before after as once where "
    "wherever which that who whose whom what how why than so".split()
)
_HEDGES = set(
    "only also just still always usually often generally normally typically sometimes mostly either both even "
    "already necessarily all quite exactly very too so really entirely yet thus therefore hence".split()
)
_INSERT_AFTER = {"is": "is not", "are": "are not", "was": "was not", "were": "were not", "can": "cannot",
                 "must": "must not", "should": "should not", "will": "will not"}  # fmt: skip
_REMOVE = {"cannot": "can", "can not": "can", "isn't": "is", "aren't": "are", "wasn't": "was", "weren't": "were",
           "doesn't": "does", "don't": "do", "didn't": "did", "won't": "will", "can't": "can", "shouldn't": "should",
           "mustn't": "must"}  # fmt: skip
_REMOVE_NOT_AFTER = ("is", "are", "was", "were", "must", "should", "will", "does", "do", "did")


def _inside_quotes(before: str) -> bool:
    """Whether text ending in ``before`` is inside a quotation or bracket left open in it."""
    pairs = [("\u2018", "\u2019"), ("\u201c", "\u201d"), ("(", ")"), ("[", "]")]
    if any(before.count(left) > before.count(right) for left, right in pairs):
        return True
    straight = re.sub(r"(?<=[A-Za-z])'(?=[A-Za-z])", "", before)  # apostrophes: don't, it's
    return any(straight.count(mark) % 2 for mark in "\"'`")


def _main_clause_word(sentence: str, start: int) -> bool:
    """No clause opener or "only" before position start, not inside quotes or brackets, not a question."""
    before = sentence[:start]
    words = {word.lower() for word in re.findall(r"[A-Za-z]+", before)}
    scoped = words & {"only", "just", "even"}  # "Only one can be installed" -> "Only one cannot be ..." is muddled
    return not (words & _SUBORDINATORS) and not scoped and not _inside_quotes(before) and not sentence.endswith("?")


def _negation_edit(sentence: str, insert: bool) -> tuple[str, str, str] | None:
    """(new sentence, old phrase, new phrase) for the first auxiliary that can be negated or un-negated."""
    negations = _NEGATIONS.findall(sentence.replace("\u2019", "'"))
    if insert and not negations:
        for match in re.finditer(rf"\b({'|'.join(_INSERT_AFTER)})\b (\w+)", sentence):
            aux, following = match.group(1), match.group(2)
            if following.lower() not in _HEDGES and _main_clause_word(sentence, match.start()):
                new = _INSERT_AFTER[aux]
                return sentence[: match.start()] + new + sentence[match.start() + len(aux) :], aux, new
    if not insert and len(negations) == 1:
        phrases = [re.escape(p).replace("'", "['\u2019]") for p in [*_REMOVE, *(f"{a} not" for a in _REMOVE_NOT_AFTER)]]
        for match in re.finditer(rf"\b({'|'.join(phrases)})\b (\w+)", sentence, re.IGNORECASE):
            old, following = match.group(1), match.group(2)
            if following.lower() in _HEDGES or not _main_clause_word(sentence, match.start()):
                continue
            plain = old.lower().replace("\u2019", "'")
            new = _REMOVE.get(plain, plain.removesuffix(" not"))
            new = new.capitalize() if old[0].isupper() else new
            return sentence[: match.start()] + new + sentence[match.start() + len(old) :], old, new
    return None


def corrupt_negation(summary_sentences: list[str], insert: bool) -> tuple[str, str, str] | None:
    for index, sentence in enumerate(summary_sentences):
        edit = _negation_edit(sentence, insert)
        if edit:
            sentences = list(summary_sentences)
            sentences[index] = edit[0]
            return " ".join(sentences), edit[1], edit[2]
    return None


# --- entity: a name or technical term replaced by another of the same kind from elsewhere in the source ---

_TERM_KINDS = {
    # 'bc', ‘grep’, "THAW", `ls`: the quote marks are part of the term (shape() then matches them)
    "quoted": re.compile(
        r"\u2018[^\u2018\u2019\s][^\u2018\u2019]{0,30}\u2019|\u201c[^\u201c\u201d\s][^\u201c\u201d]{0,30}\u201d"
        r"|(?<![\w'])'[^'\s][^']{0,30}'(?!\w)|(?<!\w)\"[^\"\s][^\"]{0,30}\"|`[^`\s][^`]{0,30}`"
    ),
    "manpage": re.compile(r"(?<![\w.-])[A-Za-z_][\w.+-]*\(\d\w*\)"),  # printf(3), git-log(1)
    "option": re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*(?![\w-])"),  # --quiet, -S
    "call": re.compile(r"(?<![\w.])[A-Za-z_][\w.:]*\(\)"),  # open(), os.path.join()
    # a capitalised word, not the first of its sentence (a run of them is one term: Wichert Akkerman);
    # terms() keeps only the name_like() ones: DBI::Profile, NAME_REGEX, FreeBSD, Wichert Akkerman
    "name": re.compile(r"(?<![\w.:'\u2018/+<$@%\-])[A-Z][\w+#]*(?:(?:::|[.\-])[\w+#]+)*(?: [A-Z][\w+#]*)*"),
}
_STOP = set(
    "a an the and or of to in on for with by from at as is are be it its this that these those not no can "
    "will may must should which when if then than into also only any all each more most other such their there "
    "used use uses using".split()
)


@functools.cache
def vocabulary() -> frozenset[str]:
    """Every lower-case word of the corpus: a stand-in for a dictionary of ordinary words."""
    return frozenset(re.findall(r"\b[a-z]+\b", CORPUS.read_text(encoding="utf-8")))


def name_like(term: str) -> bool:
    """An identifier (NAME_REGEX, DBI::Profile, InstallationCandidate) or a run of capitalised
    words none of which the corpus uses as an ordinary word (Wichert Akkerman, not Just Work).
    Single acronyms and capitalised words are left out: swapping them often gives a related
    term that is not clearly false (XML / SAX, MIME / RFC)."""
    if re.search(r"_|::|[a-z][A-Z]", term):
        return True
    words = term.lower().split()
    return len(words) > 1 and not any(word in vocabulary() for word in words)


def ordinary_quote(term: str) -> bool:
    """A quoted ordinary word ("options", "real"): emphasis, not a name."""
    return term[1:-1] in vocabulary()


def terms(text: str) -> list[tuple[str, str]]:
    """(kind, term) in order of first appearance; a term is listed under its first kind only.
    A capitalised word that the text also uses in lower case (Arguments / arguments) is an
    ordinary word, not a name."""
    lower_words = set(re.findall(r"\b[a-z]+\b", text))
    found: dict[str, str] = {}
    for kind, pattern in _TERM_KINDS.items():
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            for match in pattern.finditer(sentence):
                if kind == "name" and not sentence[: match.start()].strip("\"'\u2018\u201c([ "):
                    continue  # the first word of a sentence is capitalised anyway
                term = match.group().rstrip(".-")
                if kind == "name" and (term.lower() in lower_words or not name_like(term) or len(term) > 30):
                    continue
                if kind == "quoted" and ordinary_quote(term):
                    continue
                if len(term) >= 2 and term not in found and term.lower() not in _STOP:
                    found[term] = kind
    return sorted(((kind, term) for term, kind in found.items()), key=lambda item: text.find(item[1]))


def shape(term: str) -> str:
    """Character classes with runs collapsed: GNU -> A, Linux -> Aa, NAME_REGEX -> A_A,
    ‘gzip -d’ -> ‘a -a’, printf(3) -> a(9). Swapped terms must have the same shape."""
    classes = "".join("A" if c.isupper() else "a" if c.isalpha() else "9" if c.isdigit() else c for c in term)
    return re.sub(r"(.)\1+", r"\1", classes)


def _content_words(text: str, leave_out: str) -> set[str]:
    words = {word.lower() for word in re.findall(r"[A-Za-z]{4,}", text)}
    return words - _STOP - {word.lower() for word in re.findall(r"[A-Za-z]{4,}", leave_out)}


def _claims_the_same_of(term: str, corrupted: str, source_sentences: list[str]) -> bool:
    """Whether a source sentence that mentions ``term`` shares at least 2 and at least 40% of
    the content words of a corrupted sentence about it: it might say the same thing of it, so
    the swap could be true."""
    mentions = [sentence for sentence in source_sentences if whole(term).search(sentence)]
    for claim in (sentence for sentence in re.split(r"(?<=[.!?])\s+", corrupted) if whole(term).search(sentence)):
        words = _content_words(claim, term)
        if any(len(words & _content_words(sentence, term)) >= max(2, 0.4 * len(words)) for sentence in mentions):
            return True
    return False


def related(first: str, second: str) -> bool:
    """Possibly the same or kindred things: equal once folded, or sharing 4 or more letters in a
    row (Node / Node.js, inet_addr / inet_aton, BaseRequestHandler / StreamRequestHandler)."""
    a, b = (re.sub(r"[^a-z0-9]", "", fold(t)) for t in (first, second))
    return not a or not b or any(a[i : i + 4] in b for i in range(max(1, len(a) - 3)))


_EXAMPLE = re.compile(r"such as|e\.g\.|\blike\b|example|including|\bor\b|\band\b")


def _an_example(term: str, summary: str) -> bool:
    """Whether term stands in a list or as an example ("such as open(2)", "X or Y"): another
    member of the same class could stand there too, so the swap might still be true."""
    return any(_EXAMPLE.search(summary[max(0, m.start() - 25) : m.start()]) for m in whole(term).finditer(summary))


def corrupt_entity(summary: str, source_sentences: list[str]) -> tuple[str, str, str] | None:
    summary_terms = [(kind, term) for kind, term in terms(summary) if not _an_example(term, summary)]
    other_terms = [(kind, term) for kind, term in terms(" ".join(source_sentences)) if not whole(term).search(summary)]
    for kind, old in summary_terms:
        for other_kind, new in other_terms:
            if other_kind != kind or shape(old) != shape(new) or related(old, new):
                continue
            corrupted = whole(old).sub(lambda _: new, summary)  # noqa: B023  (used at once)
            if corrupted != summary and not _claims_the_same_of(new, corrupted, source_sentences):
                return corrupted, old, new
    return None


# --- passages and the set ---


def _rank(text: str) -> tuple[int, str]:
    """Passages with both numbers and names first, then one of them, then neither; then by a seeded hash."""
    has_number = bool(_INTEGER.search(text) or _NUMBER_WORD.search(text))
    has_name = any(kind == "name" for kind, _ in terms(text))
    return -(has_number + has_name), hashlib.sha1(f"{SEED}:{text}".encode()).hexdigest()


def candidate_sources() -> list[tuple[dict, str, list[str]]]:
    """(corpus row, cut source, its sentences): at most one passage per document, best ranked first."""
    with open(CORPUS, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    candidates = []
    for row in rows:
        cut = cut_source(row["text"])
        if cut is not None:
            candidates.append((row, *cut))
    candidates.sort(key=lambda candidate: _rank(candidate[1]))
    seen_documents: set[str] = set()
    unique = []
    for candidate in candidates:
        if candidate[0]["source"] not in seen_documents:
            seen_documents.add(candidate[0]["source"])
            unique.append(candidate)
    return unique


def corrupt(kind: str, pair: list[str], source: str, sentences: list[str]) -> tuple[str, str, str] | None:
    summary = " ".join(pair)
    if kind == "number":
        return corrupt_number(summary, source)
    if kind in ("negation-insert", "negation-remove"):
        return corrupt_negation(pair, insert=kind == "negation-insert")
    return corrupt_entity(summary, sentences)


def variants(kind: str, count: int) -> list[str]:
    """Negations alternate: "not" inserted for even counts, one removed for odd counts (a passage
    with no negation to remove waits for an even count or gets another kind)."""
    if kind != "negation":
        return [kind]
    return ["negation-insert" if count % 2 == 0 else "negation-remove"]


# Edits that pass the rules but that a reader found doubtful when reviewing the output: the
# passage is then tried with its other pairs and kinds.
REJECTED_EDITS = {
    # the source says nothing of "Purity" here, and the claim may well hold for it too
    ("pod-Data::Dumper-2", '"Deparse"', '"Purity"'),
}


def applicable(pairs: list[list[str]], source: str, sentences: list[str]) -> list[str]:
    """The corruption variants that some pair of the passage allows."""
    every = ("number", "negation-insert", "negation-remove", "entity")
    return [v for v in every if any(corrupt(v, pair, source, sentences) for pair in pairs)]


def build_summaries() -> tuple[list[dict], list[str]]:
    counts: Counter[str] = Counter()
    items, skipped = [], []
    for row, source, sentences in candidate_sources():
        if len(items) == 2 * NUM_SOURCES:
            break
        pairs = [
            sentences[i : i + 2] for i in range(len(sentences) - 1) if all(map(good_sentence, sentences[i : i + 2]))
        ]
        # the least used corruption first, ties in CORRUPTIONS order: a cycle that skips what does not apply;
        # each kind is capped at NUM_SOURCES / 3
        kinds = sorted(
            (k for k in CORRUPTIONS if counts[k] < NUM_SOURCES // 3), key=lambda k: (counts[k], CORRUPTIONS.index(k))
        )
        found = next(
            ((kind, " ".join(pair), edit) for kind in kinds for variant in variants(kind, counts[kind])
             for pair in pairs if (edit := corrupt(variant, pair, source, sentences))
             and (row["id"], edit[1], edit[2]) not in REJECTED_EDITS),
            None,
        )  # fmt: skip
        if found is None:
            possible = applicable(pairs, source, sentences)
            reason = "no two consecutive whole sentences" if not pairs else "no rule applies"
            skipped.append(
                f"{row['id']}: only {', '.join(possible)}, not due" if possible else f"{row['id']}: {reason}"
            )
            continue
        kind, faithful, edit = found
        corrupted, old, new = edit
        assert corrupted != faithful and faithful in " ".join(sentences), row["id"]
        number = len(items) // 2 + 1
        common = {"source_id": row["id"], "source": source}
        items.append({"id": f"s{number:02d}-faithful", **common, "summary": faithful, "label": "faithful",
                      "corruption": None, "changed": None})  # fmt: skip
        items.append({"id": f"s{number:02d}-corrupted", **common, "summary": corrupted, "label": "corrupted",
                      "corruption": kind, "changed": [old, new]})  # fmt: skip
        counts[kind] += 1
    return items, skipped


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    questions = build_questions()
    risk_questions = build_risk_questions(questions)
    summaries, skipped = build_summaries()
    write_jsonl(HERE / "questions.jsonl", questions)
    write_jsonl(HERE / "risk_questions.jsonl", risk_questions)
    write_jsonl(HERE / "summaries.jsonl", summaries)
    print(f"questions.jsonl: {len(questions)}", dict(Counter(q["category"] for q in questions)))
    print(f"risk_questions.jsonl: {len(risk_questions)}", dict(Counter(q["category"] for q in risk_questions)))
    print(f"summaries.jsonl: {len(summaries)}", dict(Counter(s["corruption"] or "faithful" for s in summaries)))
    for line in skipped:
        print("skipped", line)


if __name__ == "__main__":
    main()
