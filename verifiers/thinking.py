"""The answer part of a Think model's response: what the verifiers score.

A Think response reasons inside `<think> … </think>` and answers after it. Its prompt may have
opened the block already (Olmo 3 Think's chat template ends the generation prompt with `<think>`),
so a response cut off mid-thought holds no tag at all: only the prompt says it is reasoning.
"""

THINK_START, THINK_END = "<think>", "</think>"


def final_answer(response: str, thinking: bool = False) -> str | None:
    """The text after the last `</think>`; the whole response when it never thought; None when it
    is thinking (`thinking`: its prompt opened the block, or it opens one itself) and never
    closed the block, so that it has no answer yet."""
    _, closed, answer = response.rpartition(THINK_END)
    if closed:
        return answer
    if thinking or response.lstrip().startswith(THINK_START):
        return None
    return response
