"""The built-in task generator's plain data: fact tables (capitals, elements, antonyms, synonyms, irregular
forms, misspellings) and word lists, plus the record type and the phrase joiner both family modules share.

Imports only the standard library: `tasks.verify` reads the tables (months, weekdays, capitals, elements) without
importing the generator.
"""

from __future__ import annotations

Task = tuple[str, str, str, str]  # instruction, input, output, answer

# ---------------------------------------------------------------------------------------------------------
# Fact tables and word lists (plain data)
# ---------------------------------------------------------------------------------------------------------

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasília", "Argentina": "Buenos Aires", "Egypt": "Cairo", "Kenya": "Nairobi", "Russia": "Moscow",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Greece": "Athens", "Turkey": "Ankara", "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest",
    "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogotá", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "South Korea": "Seoul", "Indonesia": "Jakarta", "Nigeria": "Abuja", "Morocco": "Rabat", "Iran": "Tehran",
    "Netherlands": "Amsterdam", "Belgium": "Brussels", "Switzerland": "Bern", "New Zealand": "Wellington",
    "Cuba": "Havana", "Ukraine": "Kyiv", "Czech Republic": "Prague",
}

ELEMENTS = [  # name, symbol, atomic number
    ("Hydrogen", "H", 1), ("Helium", "He", 2), ("Lithium", "Li", 3), ("Carbon", "C", 6), ("Nitrogen", "N", 7),
    ("Oxygen", "O", 8), ("Fluorine", "F", 9), ("Neon", "Ne", 10), ("Sodium", "Na", 11), ("Magnesium", "Mg", 12),
    ("Aluminium", "Al", 13), ("Silicon", "Si", 14), ("Phosphorus", "P", 15), ("Sulfur", "S", 16),
    ("Chlorine", "Cl", 17), ("Argon", "Ar", 18), ("Potassium", "K", 19), ("Calcium", "Ca", 20), ("Iron", "Fe", 26),
    ("Nickel", "Ni", 28), ("Copper", "Cu", 29), ("Zinc", "Zn", 30), ("Silver", "Ag", 47), ("Tin", "Sn", 50),
    ("Iodine", "I", 53), ("Platinum", "Pt", 78), ("Gold", "Au", 79), ("Mercury", "Hg", 80), ("Lead", "Pb", 82),
    ("Uranium", "U", 92),
]

ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"), ("early", "late"),
    ("strong", "weak"), ("rich", "poor"), ("young", "old"), ("open", "closed"), ("full", "empty"),
    ("hard", "soft"), ("high", "low"), ("wide", "narrow"), ("thick", "thin"), ("loud", "quiet"), ("wet", "dry"),
    ("clean", "dirty"), ("cheap", "expensive"), ("brave", "cowardly"), ("sweet", "sour"), ("true", "false"),
    ("win", "lose"), ("buy", "sell"), ("push", "pull"), ("begin", "end"), ("arrive", "depart"), ("above", "below"),
    ("inside", "outside"), ("always", "never"), ("ancient", "modern"), ("accept", "refuse"), ("float", "sink"),
    ("friend", "enemy"), ("victory", "defeat"), ("shallow", "deep"), ("generous", "selfish"), ("calm", "anxious"),
    ("rough", "smooth"), ("heavy", "light"), ("increase", "decrease"), ("north", "south"),
]

SYNONYMS = [
    ("big", "large"), ("small", "tiny"), ("happy", "joyful"), ("sad", "unhappy"), ("fast", "quick"),
    ("smart", "intelligent"), ("begin", "start"), ("end", "finish"), ("angry", "furious"), ("pretty", "beautiful"),
    ("difficult", "hard"), ("easy", "simple"), ("scared", "afraid"), ("rich", "wealthy"), ("quiet", "silent"),
    ("help", "assist"), ("buy", "purchase"), ("tired", "exhausted"), ("funny", "amusing"), ("brave", "courageous"),
    ("shout", "yell"), ("enormous", "huge"), ("correct", "right"), ("choose", "select"), ("gift", "present"),
    ("odd", "strange"), ("wealth", "fortune"), ("talk", "speak"), ("cold", "chilly"), ("answer", "reply"),
]

IRREGULAR_PLURALS = {
    "child": "children", "man": "men", "woman": "women", "tooth": "teeth", "foot": "feet", "mouse": "mice",
    "goose": "geese", "person": "people", "ox": "oxen", "cactus": "cacti", "fungus": "fungi",
    "nucleus": "nuclei", "crisis": "crises", "analysis": "analyses", "thesis": "theses", "phenomenon": "phenomena",
    "criterion": "criteria", "leaf": "leaves", "knife": "knives", "wife": "wives", "wolf": "wolves",
    "half": "halves", "life": "lives", "loaf": "loaves", "shelf": "shelves", "sheep": "sheep", "deer": "deer",
    "fish": "fish", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "louse": "lice",
}
REGULAR_NOUNS = [
    "cat", "dog", "book", "table", "chair", "river", "city", "baby", "party", "story", "box", "fox", "bus",
    "glass", "church", "brush", "dish", "day", "key", "boy", "toy", "pencil", "window", "garden", "puppy",
    "country", "lady", "watch", "match", "class", "house", "tree", "cherry", "berry", "beach", "tax",
]

IRREGULAR_VERBS = {
    "go": "went", "see": "saw", "eat": "ate", "take": "took", "give": "gave", "write": "wrote", "drive": "drove",
    "run": "ran", "swim": "swam", "sing": "sang", "drink": "drank", "begin": "began", "speak": "spoke",
    "break": "broke", "choose": "chose", "fly": "flew", "grow": "grew", "know": "knew", "throw": "threw",
    "draw": "drew", "buy": "bought", "bring": "brought", "think": "thought", "teach": "taught", "catch": "caught",
    "fight": "fought", "sell": "sold", "tell": "told", "find": "found", "build": "built", "send": "sent",
    "sleep": "slept", "feel": "felt", "leave": "left", "keep": "kept", "stand": "stood", "understand": "understood",
    "wear": "wore", "forget": "forgot", "freeze": "froze", "put": "put", "cut": "cut",
}
REGULAR_VERBS = [
    "walk", "talk", "play", "jump", "cook", "clean", "open", "watch", "help", "stop", "plan", "drop", "shop",
    "try", "cry", "carry", "study", "hurry", "dance", "smile", "live", "move", "close", "paint", "visit", "travel",
    "laugh", "ask", "answer", "climb", "listen", "fix", "hug", "marry",
]

MISSPELLINGS = [  # wrong, right, a sentence with a slot for the word
    ("recieve", "receive", "Did you {} my letter last week?"),
    ("beleive", "believe", "I can hardly {} how quickly the year went by."),
    ("seperate", "separate", "Please keep the red socks {} from the white ones."),
    ("definately", "definitely", "We will {} visit the museum tomorrow."),
    ("occured", "occurred", "The accident {} late at night."),
    ("untill", "until", "The shop stays open {} nine o'clock."),
    ("wierd", "weird", "That was a {} dream."),
    ("acheive", "achieve", "She worked hard to {} her goals."),
    ("goverment", "government", "The {} announced a new law."),
    ("enviroment", "environment", "We must protect the {} for future generations."),
    ("tommorow", "tomorrow", "The meeting has been moved to {} morning."),
    ("begining", "beginning", "The {} of the film was very slow."),
    ("calender", "calendar", "I marked the date on my {}."),
    ("neccessary", "necessary", "Is it {} to bring a passport?"),
    ("adress", "address", "Please write your {} on the form."),
    ("occassion", "occasion", "A birthday is a special {}."),
    ("publically", "publicly", "The results were announced {}."),
    ("arguement", "argument", "They had an {} about money."),
    ("existance", "existence", "Scientists debated the {} of the particle."),
    ("foriegn", "foreign", "He enjoys learning {} languages."),
    ("freind", "friend", "My best {} lives next door."),
    ("grammer", "grammar", "The teacher corrected my {}."),
    ("independant", "independent", "The country became {} in 1960."),
    ("knowlege", "knowledge", "Reading books expands your {}."),
    ("libary", "library", "I borrowed three books from the {}."),
    ("mispell", "misspell", "It is easy to {} long words."),
    ("noticable", "noticeable", "There was a {} change in the weather."),
    ("persistant", "persistent", "The {} rain flooded the streets."),
    ("posession", "possession", "The old map was in his {}."),
    ("reccomend", "recommend", "Can you {} a good restaurant?"),
    ("rythm", "rhythm", "The drummer kept a steady {}."),
    ("succesful", "successful", "The launch was very {}."),
    ("suprise", "surprise", "We planned a {} party for her."),
    ("truely", "truly", "I am {} grateful for your help."),
    ("wich", "which", "I do not know {} road to take."),
    ("accomodate", "accommodate", "The hotel can {} two hundred guests."),
    ("commitee", "committee", "The {} will vote on Friday."),
    ("embarass", "embarrass", "Please do not {} me in front of my friends."),
    ("harrass", "harass", "It is wrong to {} other people online."),
    ("millenium", "millennium", "The new {} began with fireworks."),
    ("pronounciation", "pronunciation", "Her {} of French words is excellent."),
    ("restaraunt", "restaurant", "We had dinner at a small {}."),
]

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jack", "Kofi", "Lena",
         "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Yuki", "Zoe"]
NOUNS = ["apple", "garden", "window", "river", "mountain", "pencil", "basket", "castle", "bridge", "candle",
         "guitar", "jacket", "kitchen", "ladder", "mirror", "orange", "parrot", "rabbit", "saddle", "ticket",
         "umbrella", "violin", "wallet", "button", "dragon", "forest", "harbor", "island", "lantern", "meadow",
         "planet", "rocket", "shadow", "tunnel", "valley", "whistle", "blanket", "cabinet", "dolphin", "feather",
         "giraffe", "hammer", "kettle", "lemon", "monkey", "notebook", "pillow", "sandwich", "teacher", "village"]
ADJECTIVES = ["red", "old", "quiet", "bright", "tiny", "heavy", "gentle", "shiny", "broken", "famous", "small",
              "green", "wooden", "empty", "lucky", "strange", "friendly", "golden", "noisy", "soft"]
VERBS_PAST = ["found", "painted", "carried", "watched", "cleaned", "opened", "visited", "borrowed", "fixed",
              "noticed", "bought", "dropped", "followed", "moved", "sold"]
PLACES = ["in the morning", "near the station", "after lunch", "by the lake", "at the market", "before dinner",
          "on Sunday", "in the park", "at school", "during the storm", "yesterday", "last night"]
ITEM_GROUPS = {
    "groceries": ["milk", "eggs", "bread", "butter", "cheese", "rice", "apples", "carrots", "onions", "coffee",
                  "tea", "honey", "pasta", "flour", "sugar", "yogurt"],
    "animals": ["lion", "tiger", "zebra", "panda", "koala", "otter", "eagle", "shark", "camel", "horse", "whale",
                "fox", "owl", "bear", "wolf", "deer"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white", "gray",
               "violet", "indigo", "teal"],
    "sports": ["tennis", "soccer", "hockey", "cricket", "rugby", "golf", "swimming", "cycling", "boxing",
               "rowing", "skiing", "surfing", "volleyball", "basketball"],
    "tools": ["hammer", "saw", "drill", "wrench", "pliers", "screwdriver", "chisel", "level", "tape measure",
              "sander", "ladder", "shovel"],
}
ACRONYM_WORDS = ["Advanced", "Business", "Central", "Digital", "Energy", "Federal", "Global", "Health",
                 "International", "Joint", "Knowledge", "Learning", "Modern", "National", "Open", "Public",
                 "Quality", "Research", "Science", "Technology", "United", "Virtual", "World", "Youth",
                 "Network", "Institute", "Agency", "Service", "Council", "Program", "Development", "Office"]
COUNTABLE_ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "cards", "coins", "shells",
                   "stamps", "balloons", "candies"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMBER_TEXTS = [  # sentences with number slots {0}, {1}, {2} and a name {n}
    "{n} walked {0} kilometers on Monday and {1} kilometers on Tuesday.",
    "The library received {0} new books in March and {1} in April.",
    "Our team scored {0} points in the first half and {1} points in the second half.",
    "There are {0} students in class A, {1} in class B and {2} in class C.",
    "The recipe needs {0} grams of flour, {1} grams of sugar and {2} grams of butter.",
    "{n} read {0} pages on Saturday and {1} pages on Sunday.",
    "A farmer has {0} cows, {1} sheep and {2} chickens.",
    "The shop sold {0} shirts, {1} hats and {2} scarves today.",
    "The bus carried {0} passengers in the morning and {1} in the evening.",
    "The museum had {0} visitors on Friday, {1} on Saturday and {2} on Sunday.",
    "{n} planted {0} tulips and {1} roses in the garden.",
    "The orchestra has {0} violins, {1} cellos and {2} flutes.",
]


def join_items(items: list[str]) -> str:
    """`a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
