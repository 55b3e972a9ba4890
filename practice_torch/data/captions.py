"""Captions the data can vouch for, and the characters a text encoder reads them as.

Galaxies know the GalSim parameters they were drawn from; ``galaxy_attributes`` turns them into words (small or
large, faint or bright, round or elongated and which way, a diffuse profile or a steep core), leaving out what is
in the middle of its range, and ``galaxy_caption`` words them: "a compact, luminous galaxy with a soft core". The
pairs of ``GALAXY_HELD_OUT`` are never said together in training (one of the two is left out).

Fashion-MNIST knows two things about each picture: its class, and how dark or light it is (its mean intensity,
measured). A caption names the class by one of its synonyms and, when the picture is in the darkest or lightest
third of its class (``brightness_edges``: the class's terciles of mean intensity on the training split), says so
by one of the words for that, in one of several phrasings: "a photo of a pale sneaker", "dark pullover",
"a picture of a handbag". The wording is drawn afresh each time (``wording``: one uniform per example), so a model
must read the words, not memorise strings.

Held out: the combinations in ``HELD_OUT`` (a class with one brightness) never appear in a training caption. The
training pictures that have them are captioned by their class alone, so both words are seen, never together;
``prompts(held_out=True)`` asks for the unseen combinations.

What the captions say, word by word: ``vocabulary`` (computed from the caption tables); ``unseen_words`` names a
prompt's words no training caption says.

Tokens: one per character of ``ALPHABET`` (lower case), after a start token: ids (S,) = [START, c_1, ..., c_L,
PAD, ...]. The empty caption, the unconditional model's, is the start token alone (``EMPTY``). A training step on
Fashion-MNIST reads the same ids from a table of every caption (``fashion_caption_table``), indexed on the device
(``fashion_caption_ids``): no caption is written on the host.
"""

from __future__ import annotations

import math
import re

import torch

from practice_torch.data.galaxies import denormalise_condition

# 1. Characters -> token ids ----------------------------------------------------------------------------------
PAD, START = 0, 1
ALPHABET = " abcdefghijklmnopqrstuvwxyz-,'"
VOCAB = 2 + len(ALPHABET)  # pad, start, the characters
EMPTY = ""
_IDS = {c: i + 2 for i, c in enumerate(ALPHABET)}


def check_prompt(text: str, max_len: int) -> str:
    """The prompt in lower case, or a one-line ValueError naming the character it cannot read or its length, or
    saying that a prompt of spaces alone is not the empty prompt ("")."""
    if text and not text.strip():
        raise ValueError(f"a prompt of spaces alone ({text!r}) is not the empty prompt: for the grid of every class "
                         "(of the galaxies' one-attribute prompts), leave model.prompt out or set it empty "
                         "(--set model.prompt=)")
    text = text.strip().lower()
    bad = sorted({c for c in text if c not in _IDS})
    if bad:
        raise ValueError(f"a prompt may use the letters a-z, spaces and {ALPHABET[-3:]!r}; {text!r} has "
                         f"{''.join(bad)!r}")
    if len(text) + 1 > max_len:
        raise ValueError(f"a prompt has at most {max_len - 1} characters, {text!r} has {len(text)}")
    return text


def tokenize(texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, max_len) int64 [START, characters, PAD ...] and the mask (N, max_len) bool of real tokens."""
    ids = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for i, text in enumerate(texts):
        row = [START, *(_IDS[c] for c in check_prompt(text, max_len))]
        ids[i, : len(row)] = torch.tensor(row)
    return ids, ids != PAD


def detokenize(ids: torch.Tensor) -> list[str]:
    """The texts of token ids (N, S) (start and padding dropped)."""
    return ["".join(ALPHABET[i - 2] for i in row.tolist() if i >= 2) for row in ids]


# 2. Fashion-MNIST: class and brightness ---------------------------------------------------------------------
NOUNS = (("t-shirt", "tee", "top"), ("pair of trousers", "pair of pants", "pair of slacks"),
         ("pullover", "sweater", "jumper"), ("dress", "frock", "gown"), ("coat", "jacket", "overcoat"),
         ("sandal", "strappy sandal", "open shoe"), ("shirt", "blouse", "button-up shirt"),
         ("sneaker", "trainer", "running shoe"), ("bag", "handbag", "purse"),
         ("ankle boot", "boot", "short boot"))
BRIGHTNESS = ("dark", "medium", "light")  # the bins: below the class's lower tercile, between, above the upper one
ADJECTIVES = {"dark": ("dark", "black", "deep-coloured"), "light": ("light", "pale", "white")}
TEMPLATES = ("a {}", "{}", "a photo of a {}", "a picture of a {}", "an image of a {}")
HELD_OUT = ((1, "light"), (7, "dark"), (3, "dark"))  # (class, brightness) never captioned together in training


def mean_intensity(x: torch.Tensor) -> torch.Tensor:
    """x: (N, 1, H, W) in [0, 1] -> (N,) mean pixel intensity."""
    return x.flatten(1).mean(1)


def brightness_edges(x: torch.Tensor, y: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """(classes, 2): the 1/3 and 2/3 quantiles of each class's mean intensity. x: (N, 1, H, W), y: (N,)."""
    m = mean_intensity(x)
    q = torch.tensor([1 / 3, 2 / 3], dtype=m.dtype)
    return torch.stack([torch.quantile(m[y == k], q) for k in range(classes)])


def brightness_bin(x: torch.Tensor, y: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(N,) int64 index into BRIGHTNESS (0 dark, 1 medium, 2 light) of each picture against its class's edges."""
    m, e = mean_intensity(x), edges.to(x.device)[y]
    return (m > e[:, 0]).long() + (m > e[:, 1]).long()


def pick_index(n: int, u: float) -> int:
    """Which of n options a uniform u in [0, 1) picks: min(floor(u n), n - 1)."""
    return min(int(u * n), n - 1)


def pick(options: tuple[str, ...], u: float) -> str:
    return options[pick_index(len(options), u)]


def with_articles(text: str) -> str:
    """'a' -> 'an' before a vowel: 'a ankle boot' -> 'an ankle boot'."""
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


def fashion_caption(label: int, brightness: int, u: float, held_out: bool = False) -> str:
    """One caption of a picture of class ``label`` in brightness bin ``brightness``, worded by u in [0, 1): the
    template, the noun and the adjective each take a digit of u's base-15 expansion. The brightness word is left
    out for a medium picture and, in training (``held_out`` False), for a combination of HELD_OUT."""
    digits = (u * 15) % 1, (u * 225) % 1, (u * 3375) % 1  # the template's, the noun's, the adjective's
    return fashion_words(label, brightness, *(pick_index(n, d) for n, d in zip(WORDING, digits)), held_out=held_out)


WORDING = (len(TEMPLATES), len(NOUNS[0]), len(ADJECTIVES["dark"]))  # the options each digit of u picks among
assert all(len(n) == WORDING[1] for n in NOUNS) and all(len(a) == WORDING[2] for a in ADJECTIVES.values())


def fashion_words(label: int, brightness: int, template: int, noun: int, adjective: int,
                  held_out: bool = False) -> str:
    """``fashion_caption`` by the indices of its template, noun and adjective."""
    text = NOUNS[label][noun]
    word = BRIGHTNESS[brightness]
    if word != "medium" and (held_out or (label, word) not in HELD_OUT):
        text = f"{ADJECTIVES[word][adjective]} {text}"
    return with_articles(TEMPLATES[template].format(text))


# The same captions looked up on the device: what a training step reads, with no string written on the host
def fashion_caption_table(max_len: int) -> torch.Tensor:
    """The token ids of every training caption (``fashion_caption``, ``held_out`` False): (classes, bins, templates,
    nouns, adjectives, max_len) int64, the entry [k, b, i, j, l] worded by the i-th template, j-th noun and l-th
    adjective (the adjective's index is ignored where the caption says no brightness word)."""
    classes, bins = len(NOUNS), len(BRIGHTNESS)
    texts = [fashion_words(k, b, i, j, a) for k in range(classes) for b in range(bins) for i in range(WORDING[0])
             for j in range(WORDING[1]) for a in range(WORDING[2])]
    return tokenize(texts, max_len)[0].reshape(classes, bins, *WORDING, max_len)


def fashion_caption_ids(table: torch.Tensor, labels: torch.Tensor, bins: torch.Tensor, wording: torch.Tensor,
                        drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokenize(batch_captions(...))`` of a Fashion-MNIST batch where the table is (``fashion_caption_table``): the
    ids (B, max_len) and the mask (B, max_len) of labels (B,), brightness bins (B,), wording (B,) float64 uniforms
    and drop (B,) bool (the empty caption). Each digit of u picks as ``pick_index`` does, min(floor(digit n), n - 1).
    """
    digits = [(wording * 15) % 1, (wording * 225) % 1, (wording * 3375) % 1]  # fashion_caption's, in float64
    picks = [torch.clamp((d * n).long(), max=n - 1) for d, n in zip(digits, WORDING)]
    ids = table[labels, bins, *picks]
    empty = torch.full_like(ids, PAD)
    empty[:, 0] = START
    ids = torch.where(drop[:, None], empty, ids)
    return ids, ids != PAD


def fashion_captions(labels: torch.Tensor, bins: torch.Tensor, wording: torch.Tensor) -> list[str]:
    """Training captions of a batch: labels (N,), bins (N,), wording (N,) uniforms in [0, 1)."""
    return [fashion_caption(int(k), int(b), float(u)) for k, b, u in zip(labels, bins, wording)]


def batch_captions(batch, wording: torch.Tensor, drop: torch.Tensor, brightness_edges: torch.Tensor) -> list[str]:
    """The training captions of a batch in the drawn wording (B,) uniforms, the empty caption where ``drop`` (B,).
    Fashion-MNIST's batch is (x (B, 1, H, W), y (B,) classes): class and brightness (``brightness_edges``, a text-to-
    image run's per-class bin edges); the galaxies' is (x, y (B, 5) normalised GalSim parameters): their words
    (``galaxy_attributes``)."""
    x, y = batch[0], batch[1]
    if y.ndim == 2:
        words = galaxy_attributes(denormalise_condition(y.detach().cpu().float()))
        texts = [galaxy_caption(w, float(u)) for w, u in zip(words, wording.cpu())]
    else:
        bins = brightness_bin(x, y.long(), brightness_edges).cpu()
        texts = fashion_captions(y.long().cpu(), bins, wording.cpu())
    return [EMPTY if d else text for text, d in zip(texts, drop.tolist())]


def prompts(held_out: bool = False) -> list[tuple[str, int, int]]:
    """(prompt, class, brightness bin) in a fixed wording ('a dark sneaker', 'a sneaker', ...): every class with no
    brightness word (bin 1) and with 'dark' and 'light' where the combination was seen in training, or, with
    ``held_out``, only the HELD_OUT combinations."""
    out = []
    for k in range(len(NOUNS)):
        for b, word in enumerate(BRIGHTNESS):
            unseen = (k, word) in HELD_OUT
            if unseen != held_out or (word == "medium" and held_out):
                continue
            out.append((prompt_text(k, b), k, b))
    return out


def prompt_text(label: int, brightness: int) -> str:
    """The fixed wording of a class and brightness bin: 'a dark sneaker', 'a sneaker' (bin 1), 'an ankle boot'."""
    noun, word = NOUNS[label][0], BRIGHTNESS[brightness]
    return with_articles(f"a {noun}" if word == "medium" else f"a {ADJECTIVES[word][0]} {noun}")


def parse_fashion(text: str) -> tuple[int | None, int]:
    """What a prompt asks for: (class or None when it names none, brightness bin: 1 when it names none)."""
    text = f" {text.lower()} "
    label = next((k for k, nouns in enumerate(NOUNS) for n in sorted(nouns, key=len, reverse=True)
                  if f" {n} " in text or f" {n}," in text), None)
    bright = next((BRIGHTNESS.index(w) for w, words in ADJECTIVES.items() for a in words if f" {a} " in text), 1)
    return label, bright


# 3. Galaxies: size, brightness, shape and orientation, profile ----------------------------------------------
# Each attribute is read off the GalSim parameters (physical units) into a word or none: the middle of each range
# gets no word, so a caption says only what is clearly so. The thresholds cut the uniform ranges into thirds.
GALAXY_WORDS = {
    "size": {"small": ("small", "compact", "tiny"), "large": ("large", "big", "extended")},
    "brightness": {"faint": ("faint", "dim"), "bright": ("bright", "luminous")},
    "shape": {"round": ("round", "circular"), "elongated": ("elongated", "elliptical", "stretched")},
    "orientation": {"horizontal": ("horizontal",), "vertical": ("vertical",)},
}
PROFILES = {"diffuse": ("with a diffuse profile", "with a soft core", "with a flat profile"),
            "concentrated": ("with a steep core", "with a concentrated core", "with a peaked core")}
GALAXY_TEMPLATES = ("a {} galaxy{}", "{} galaxy{}", "an image of a {} galaxy{}", "a photo of a {} galaxy{}")
GALAXY_HELD_OUT = (("large", "faint"), ("small", "elongated"))  # never said together in training


def galaxy_attributes(physical: torch.Tensor) -> list[dict[str, str]]:
    """The words each galaxy earns: physical (N, 5) = (sersic_n, half_light_r ["], e1, e2, log10_flux) ->
    per galaxy {attribute: word} for size (r < 0.6" small, > 0.9" large), brightness (log10 F < 3.5 faint, > 4
    bright), shape (|g| < 0.15 round, > 0.35 elongated), orientation of an elongated one (major axis within 22.5
    degrees of the x axis: horizontal, of the y axis: vertical) and profile (n < 1.5 diffuse, n > 2.8
    concentrated)."""
    out = []
    for n, r, e1, e2, log_flux in physical.double().tolist():
        words, g = {}, (e1 * e1 + e2 * e2) ** 0.5
        if r < 0.6 or r > 0.9:
            words["size"] = "small" if r < 0.6 else "large"
        if log_flux < 3.5 or log_flux > 4.0:
            words["brightness"] = "faint" if log_flux < 3.5 else "bright"
        if g < 0.15 or g > 0.35:
            words["shape"] = "round" if g < 0.15 else "elongated"
        if g > 0.35:
            angle = abs(math.degrees(0.5 * math.atan2(e2, e1)))  # the major axis from the x axis, 0 .. 90
            if angle < 22.5 or angle > 67.5:
                words["orientation"] = "horizontal" if angle < 22.5 else "vertical"
        if n < 1.5 or n > 2.8:
            words["profile"] = "diffuse" if n < 1.5 else "concentrated"
        out.append(words)
    return out


def galaxy_caption(words: dict[str, str], u: float, held_out: bool = False) -> str:
    """A caption of a galaxy's words, worded by u in [0, 1) (template, synonyms, and which word of a held-out pair
    is left out in training)."""
    digits = [(u * 7**i) % 1 for i in range(1, 9)]
    words = dict(words)
    for a, b in GALAXY_HELD_OUT:
        said = set(words.values())
        if not held_out and a in said and b in said:
            drop = a if digits[7] < 0.5 else b
            words = {k: v for k, v in words.items() if v != drop and (k != "orientation" or drop != "elongated")}
    adjectives = [pick(GALAXY_WORDS[k][words[k]], digits[i])
                  for i, k in enumerate(("size", "brightness", "shape", "orientation")) if k in words]
    profile = f" {pick(PROFILES[words['profile']], digits[4])}" if "profile" in words else ""
    text = pick(GALAXY_TEMPLATES, digits[5]).format(", ".join(adjectives) if adjectives else "", profile)
    return with_articles(" ".join(text.split()).replace(" ,", ","))


def parse_galaxy(text: str) -> dict[str, str]:
    """The attributes a galaxy prompt names: {attribute: word}."""
    found = {}
    padded = f" {text.lower().replace(',', ' ')} "
    for attribute, options in (*GALAXY_WORDS.items(), ("profile", PROFILES)):
        for word, synonyms in options.items():
            if any(f" {s} " in padded for s in synonyms):
                found[attribute] = word
    return found


# Prompts the measurements ask: one attribute each (the other words left to the model), and the held-out pairs
GALAXY_PROMPTS = (("a small galaxy", "size", "small"), ("a large galaxy", "size", "large"),
                  ("a faint galaxy", "brightness", "faint"), ("a bright galaxy", "brightness", "bright"),
                  ("a round galaxy", "shape", "round"), ("an elongated galaxy", "shape", "elongated"),
                  ("an elongated, vertical galaxy", "orientation", "vertical"),
                  ("an elongated, horizontal galaxy", "orientation", "horizontal"),
                  ("a galaxy with a diffuse profile", "profile", "diffuse"),
                  ("a galaxy with a steep core", "profile", "concentrated"))
GALAXY_HELD_OUT_PROMPTS = ("a large, faint galaxy", "a small, elongated galaxy")


# 4. The words the captions say ---------------------------------------------------------------------------------
CAPTION_TABLES = {"fashion_mnist": (TEMPLATES, NOUNS, ADJECTIVES),
                  "galaxies": (GALAXY_TEMPLATES, GALAXY_WORDS, PROFILES)}  # every wording a caption is made of


def words(text: str) -> list[str]:
    """The words of a text in order, lower case: runs of letters, hyphens and apostrophes ('t-shirt',
    'deep-coloured'); spaces, commas and anything else (a template's '{}') separate them."""
    return [w for w in (m.strip("-'") for m in re.findall(r"[a-z'-]+", text.lower())) if w]


def table_strings(table) -> list[str]:
    """Every string of a caption table: a string, or tuples and dicts (their values) of them, nested."""
    if isinstance(table, str):
        return [table]
    return [s for item in (table.values() if isinstance(table, dict) else table) for s in table_strings(item)]


def vocabulary(dataset: str) -> tuple[str, ...]:
    """The words the training captions of ``dataset`` ('fashion_mnist' or 'galaxies') say, sorted: those of their
    templates, nouns or attribute words and synonyms, and profile phrases (``CAPTION_TABLES``)."""
    return tuple(sorted({w for s in table_strings(CAPTION_TABLES[dataset]) for w in words(s)}))


def unseen_words(text: str, dataset: str) -> list[str]:
    """The words of ``text`` that no training caption of ``dataset`` says, in the order of their first use."""
    known = set(vocabulary(dataset))
    return list(dict.fromkeys(w for w in words(text) if w not in known))
