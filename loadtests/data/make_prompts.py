"""Write prompts.jsonl: the project's own short / medium / long texts for load tests (run once)."""

from __future__ import annotations

import json
from pathlib import Path

SHORT = [
    "Good morning, your table is ready.",
    "Please hold while I connect your call.",
    "The train to Berlin leaves from platform nine.",
    "Your package was delivered at noon.",
    "Thank you for calling, how can I help you today?",
    "The meeting starts in five minutes.",
    "Turn left at the next intersection.",
    "Your balance is forty two dollars and ten cents.",
]
MEDIUM = [
    "Welcome to the city library. The reading room on the second floor is open until nine tonight, "
    "and the children's section hosts a story hour every Saturday morning at ten.",
    "Before you begin the installation, make sure the device is unplugged, place it on a flat surface, "
    "and keep the small screws in the bag provided so that none of them get lost.",
    "Today's forecast calls for light rain in the morning, clearing by early afternoon, with a high of "
    "eighteen degrees and a gentle breeze coming off the coast in the evening.",
    "Our support team has received your request and will reply within one business day. In the "
    "meantime, you can check the status of your ticket from the help page of your account.",
    "The museum's new exhibition brings together more than two hundred maps drawn over four centuries, "
    "showing how travellers imagined the coastlines they had never seen.",
    "To reset your password, open the settings menu, choose security, and follow the link we send to "
    "the email address registered on your account.",
]
LONG = [
    "The old lighthouse stood at the edge of the cliff for more than a hundred years. Every night its "
    "keeper climbed the narrow spiral stairs, trimmed the wick, and polished the great lens until it "
    "threw a clean white beam across the water. Ships that passed in the dark counted its flashes and "
    "knew exactly where they were. When the light was finally automated, the keeper's cottage became "
    "a small museum, and visitors still climb the same stairs to look out over the bay at sunset.",
    "Learning a new language as an adult is less about talent than about habit. A few minutes every "
    "day, spent listening to real conversations and repeating what you hear, does more than a long "
    "session once a week. Mistakes are part of the process: each one shows you a rule you have not "
    "yet absorbed. After a few months, the sounds that once seemed like noise begin to separate into "
    "words, and one day you notice that you understood a whole sentence without translating it.",
    "The quarterly results show steady growth across all three regions. Revenue rose by eleven percent "
    "compared with the same period last year, driven mostly by new customers in the north. Operating "
    "costs stayed flat thanks to the consolidation of two warehouses, and the team expects margins to "
    "improve further once the new scheduling system is rolled out in the spring. The board will "
    "review the updated plan at its next meeting and publish the outlook for the full year.",
    "In the forest at dawn the first sound is usually a single bird, uncertain, as if testing the air. "
    "Within minutes others answer, and soon the whole canopy is full of overlapping songs. Scientists "
    "who record these choruses can tell from them which species are present, how many there are, and "
    "whether the forest is healthy. A quiet morning, in a place that should be loud, is often the "
    "first sign that something has changed.",
]


def main() -> None:
    out = Path(__file__).with_name("prompts.jsonl")
    with out.open("w", encoding="utf-8") as fh:
        for length, texts in (("short", SHORT), ("medium", MEDIUM), ("long", LONG)):
            for text in texts:
                fh.write(json.dumps({"text": text, "length": length}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
