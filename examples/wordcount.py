"""Word count: the routines of the API contract, run from Python or from a flow file.

python -m examples.wordcount
weirflow run examples/wordcount.yaml --input split.text=@examples/wordcount.txt
"""

from __future__ import annotations

from pathlib import Path

import weirflow as wf

TEXT_FILE = Path(__file__).with_name("wordcount.txt")


class Split(wf.Routine):
    text = wf.Slot()  # capacity=1000, overflow="block", block_timeout_s=None
    words = wf.Event()

    @text.handler  # called once per item
    async def split(self, text: str, ctx: wf.Context) -> None:
        for w in text.split():
            await ctx.emit(self.words, w)


class Count(wf.Routine):
    words = wf.Slot(capacity=64)
    total = wf.Event()
    min_len: int = 1  # a setting: Count(min_len=2), or ``with: {min_len: 2}`` in a flow file

    @words.handler
    def count(self, word: str, ctx: wf.Context) -> None:  # plain def: runs in a thread
        if len(word) >= self.min_len:
            ctx.state["n"] = ctx.state.get("n", 0) + 1

    async def on_end(self, ctx: wf.Context) -> None:  # once, after its last item
        await ctx.emit(self.total, ctx.state.get("n", 0))


def build_flow() -> wf.Flow:
    flow = wf.Flow("wordcount")
    flow.add("split", Split())
    flow.add("count", Count())
    flow.connect("split.words", "count.words")  # "routine.event" -> "routine.slot"
    flow.output("count.total")  # collected into result.outputs
    flow.validate()
    return flow


def main() -> None:
    lines = [line for line in TEXT_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = wf.run(build_flow(), {"split.text": lines}, timeout_s=30)
    print(f"status: {result.status.value}")
    print(f"lines: {len(lines)}")
    print(f"words: {result.outputs['count.total'][0]}")


if __name__ == "__main__":
    main()
