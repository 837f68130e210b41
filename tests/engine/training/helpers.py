"""Store fixtures: a few rated turns with each kind of verdict."""

from __future__ import annotations


def add_rated_turn(store, prompt: str, left: str, right: str, verdict: str) -> str:
    conv = store.create_conversation({"source": "bundled"}, {"source": "bundled"}, {}, blind=False)
    turn = store.add_turn(conv, prompt, blind=False, a_side="left")
    info = {"name": "m", "backend": "test"}
    a = store.add_reply(turn, "a", "left", left, "stop", {"source": "bundled"}, info, {}, {})
    b = store.add_reply(turn, "b", "right", right, "stop", {"source": "bundled", "adapter": "x"}, info, {}, {})
    return store.rate(turn, a, b, verdict)


HUMAN = ["lol yeah", "nah not really, u?", "haha same", "ugh mondays right", "idk maybe later",
         "omg yes", "kinda tired tbh", "sounds good!"]
ASSISTANT = ["Certainly! Here is a detailed overview of the topic you asked about, with several points.",
             "As an AI language model, I do not have personal experiences, but I can help.",
             "Thank you for your question. There are many factors to consider in this situation.",
             "Great question! Let me explain in detail: 1. First point 2. Second point.",
             "I understand how you feel. It is important to take care of yourself every day.",
             "Hello! I am doing well, thank you for asking. How may I assist you today?",
             "That is an interesting question. Different people have different preferences.",
             "Absolutely! Here are some suggestions that you might find helpful and useful."]


def seed_votes(store, n: int = 8) -> list[str]:
    """n decisive votes for the human-sounding reply, plus a tie and a both_bad."""
    ids = []
    verdicts = ["certainly_left", "likely_right", "certainly_right", "likely_left"]
    for i in range(n):
        v = verdicts[i % 4]
        human_left = v.endswith("left")
        h, a = HUMAN[i % len(HUMAN)], ASSISTANT[i % len(ASSISTANT)]
        ids.append(add_rated_turn(store, f"hey {i}", h if human_left else a, a if human_left else h, v))
    add_rated_turn(store, "tie?", "ok", "okay", "tie")
    add_rated_turn(store, "bad?", "x", "y", "both_bad")
    return ids
