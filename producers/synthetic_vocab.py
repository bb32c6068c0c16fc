"""Topic vocabularies and title/text templates for the synthetic click-log generator.

Each topic has its own hand-written word list with no word shared between topics, so
a language model (or a person) can tell an item's topic from its title alone; the
generic words and templates are shared by every topic and carry no topic signal.

>>> import numpy as np
>>> title, text = make_title(np.random.default_rng(0), "cooking")
>>> any(word in title.lower() for word in TOPIC_WORDS["cooking"])
True
>>> len(TOPICS)
12
"""

from __future__ import annotations

import numpy as np

__all__ = ["GENERIC_ADJECTIVES", "GENERIC_ENDINGS", "TOPICS", "TOPIC_WORDS", "make_title"]

TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "sports": (
        "football", "striker", "goalkeeper", "marathon", "tennis", "playoffs", "championship",
        "head coach", "stadium", "referee", "league table", "basketball", "sprinter",
        "transfer window", "cricket", "quarterback", "hat-trick", "olympics", "cycling race",
        "relay team",
    ),
    "cooking": (
        "recipe", "sourdough", "braised beef", "pasta", "chef", "oven", "skillet",
        "roast chicken", "spices", "dessert", "risotto", "dumplings", "marinade", "baking",
        "casserole", "kitchen", "vegan curry", "pastry", "barbecue", "soup",
    ),
    "finance": (
        "stocks", "interest rates", "mortgage", "inflation", "dividend", "portfolio", "bonds",
        "savings account", "retirement fund", "tax return", "household budget", "investors",
        "earnings", "central bank", "crypto", "credit card", "pension", "hedge fund",
        "recession", "index fund",
    ),
    "travel": (
        "flights", "beach resort", "backpacking", "itinerary", "passport", "hostel", "island",
        "road trip", "cruise", "airport", "hiking trail", "city break", "luggage", "hotel",
        "visa", "tourists", "destination", "train journey", "camping", "old town",
    ),
    "science": (
        "physics", "telescope", "quantum", "genome", "fossil", "laboratory", "chemistry",
        "black hole", "researchers", "experiment", "climate data", "particle", "evolution",
        "neuroscience", "galaxy", "molecule", "microscope", "asteroid", "peer review",
        "astronomy",
    ),
    "music": (
        "album", "guitar", "concert", "playlist", "singer", "band", "jazz", "symphony",
        "lyrics", "drummer", "festival lineup", "vinyl", "hip hop", "orchestra", "single",
        "piano", "songwriter", "tour dates", "remix", "acoustic set",
    ),
    "film": (
        "movie", "director", "box office", "trailer", "sequel", "screenplay", "actress",
        "cinema", "oscar", "documentary", "blockbuster", "casting", "premiere", "horror film",
        "animated feature", "cinematographer", "film festival", "remake", "biopic", "thriller",
    ),
    "gaming": (
        "console", "video game", "speedrun", "esports", "multiplayer", "boss fight",
        "controller", "open world", "rpg", "patch notes", "indie game", "loot", "level design",
        "twitch streamer", "gameplay", "respawn", "dungeon", "leaderboard", "game engine",
        "shooter",
    ),
    "health": (
        "sleep", "nutrition", "workout", "blood pressure", "vitamins", "therapy",
        "mental health", "doctors", "immune system", "diet", "heart disease", "yoga",
        "meditation", "hospital", "symptoms", "stress", "cholesterol", "clinic", "wellness",
        "allergies",
    ),
    "fashion": (
        "dress", "sneakers", "runway", "designer", "denim", "handbag", "wardrobe", "outfit",
        "leather jacket", "style trends", "fashion week", "boutique", "silk scarf", "tailoring",
        "streetwear", "knitwear", "accessories", "lookbook", "vintage clothing", "stylist",
    ),
    "technology": (
        "smartphone", "laptop", "software", "startup", "ai model", "chip", "cloud",
        "cybersecurity", "gadget", "app", "processor", "robotics", "data center", "browser",
        "open source", "firmware", "battery tech", "wearables", "semiconductor", "programming",
    ),
    "gardening": (
        "tomatoes", "compost", "seedlings", "pruning", "roses", "greenhouse", "soil",
        "perennials", "herbs", "lawn", "orchard", "raised beds", "mulch", "succulents",
        "watering", "garden shed", "tulip bulbs", "vegetable patch", "hedges", "pollinators",
    ),
}  # fmt: skip

#: Topic names in a fixed order; a config with ``n_topics=k`` uses the first ``k``.
TOPICS: tuple[str, ...] = tuple(TOPIC_WORDS)

GENERIC_ADJECTIVES: tuple[str, ...] = (
    "new", "best", "surprising", "essential", "simple", "ultimate", "hidden", "top", "weekly",
    "latest", "big", "quick", "honest", "classic", "smart", "everyday",
)  # fmt: skip
GENERIC_ENDINGS: tuple[str, ...] = (
    "explained", "this week", "in 2024", "for beginners", "you missed", "to watch", "reviewed",
    "tips", "mistakes to avoid", "what to know", "right now", "ranked",
)  # fmt: skip

# {a}, {b}, {c}: distinct topic words; {adj}, {end}: generic words.
_TITLE_TEMPLATES: tuple[str, ...] = (
    "{adj} {a} {end}",
    "{a} and {b}: {end}",
    "How {a} is changing {b}",
    "The {adj} guide to {a} and {b}",
    "{adj} {a}, {b} and {c}",
    "Why {a} matters for {b}",
    "{a} {end}: {adj} {b}",
)
_TEXT_TEMPLATE = "{art} {adj} look at {a}, {b} and {c}; {end2}. Also: {d} and {e}."


def make_title(rng: np.random.Generator, topic: str) -> tuple[str, str]:
    """A (title, text) pair for an item of ``topic``, drawn from ``rng``."""
    words = TOPIC_WORDS[topic]
    a, b, c, d, e = (words[i] for i in rng.choice(len(words), size=5, replace=False))
    adj = GENERIC_ADJECTIVES[int(rng.integers(len(GENERIC_ADJECTIVES)))]
    end, end2 = (GENERIC_ENDINGS[i] for i in rng.choice(len(GENERIC_ENDINGS), 2, replace=False))
    template = _TITLE_TEMPLATES[int(rng.integers(len(_TITLE_TEMPLATES)))]
    title = template.format(a=a, b=b, c=c, adj=adj, end=end)
    art = "An" if adj[0] in "aeiou" else "A"
    text = _TEXT_TEMPLATE.format(a=a, b=b, c=c, d=d, e=e, art=art, adj=adj, end2=end2)
    return title[0].upper() + title[1:], text
