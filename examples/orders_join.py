"""Fan-out and join: each order goes to pricing and to a stock check at once, and
``@wf.join`` pairs the two answers into an invoice that a ledger sums up.

    python -m examples.orders_join

``Price`` and ``Stock`` keep the default ``concurrency = 1``, so each answers in
order and the join pairs the answers for the same order.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import weirflow as wf

PRICES = {"apple": 0.5, "pear": 0.75, "plum": 1.25}
STOCK = {"apple": 100, "pear": 3, "plum": 10}
ORDERS = [
    {"id": 1, "sku": "apple", "qty": 12},
    {"id": 2, "sku": "pear", "qty": 5},
    {"id": 3, "sku": "plum", "qty": 2},
    {"id": 4, "sku": "apple", "qty": 40},
    {"id": 5, "sku": "plum", "qty": 20},
    {"id": 6, "sku": "pear", "qty": 1},
]


class Intake(wf.Routine):
    """Accepts orders; ``order`` is connected to two slots, so each gets every order."""

    orders = wf.Slot()
    order = wf.Event()

    @orders.handler
    async def accept(self, order: dict[str, Any], ctx: wf.Context) -> None:
        await ctx.emit(self.order, order)


class Price(wf.Routine):
    orders = wf.Slot(capacity=16)
    priced = wf.Event()
    prices: dict[str, float] = {}

    @orders.handler
    async def price(self, order: dict[str, Any], ctx: wf.Context) -> None:
        await asyncio.sleep(0.002)  # stands in for a call to a pricing service
        amount = self.prices[order["sku"]] * order["qty"]
        await ctx.emit(self.priced, {"id": order["id"], "amount": amount})


class Stock(wf.Routine):
    orders = wf.Slot(capacity=16)
    checked = wf.Event()
    stock: dict[str, int] = {}

    @orders.handler
    def check(self, order: dict[str, Any], ctx: wf.Context) -> None:  # plain def: runs in a thread
        ctx.emit(self.checked, {"id": order["id"], "in_stock": self.stock[order["sku"]] >= order["qty"]})


class Invoice(wf.Routine):
    priced = wf.Slot()
    checked = wf.Slot()
    invoice = wf.Event()

    @wf.join(priced, checked)
    async def combine(self, price: dict[str, Any], check: dict[str, Any], ctx: wf.Context) -> None:
        if price["id"] != check["id"]:
            raise ValueError(f"answers out of step: {price['id']} vs {check['id']}")
        await ctx.emit(
            self.invoice,
            {"id": price["id"], "amount": price["amount"], "backorder": not check["in_stock"]},
        )


class Ledger(wf.Routine):
    invoices = wf.Slot()
    summary = wf.Event()

    @invoices.handler
    async def book(self, invoice: dict[str, Any], ctx: wf.Context) -> None:
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        ctx.state["revenue"] = ctx.state.get("revenue", 0.0) + invoice["amount"]
        if invoice["backorder"]:
            ctx.state.setdefault("backorders", []).append(invoice["id"])

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(
            self.summary,
            {
                "invoices": ctx.state.get("count", 0),
                "revenue": ctx.state.get("revenue", 0.0),
                "backorders": sorted(ctx.state.get("backorders", [])),
            },
        )


def build_flow() -> wf.Flow:
    flow = wf.Flow("orders")
    flow.add("intake", Intake())
    flow.add("price", Price(prices=PRICES))
    flow.add("stock", Stock(stock=STOCK))
    flow.add("invoice", Invoice())
    flow.add("ledger", Ledger())
    flow.connect("intake.order", "price.orders")  # fan-out: one event, two slots
    flow.connect("intake.order", "stock.orders")
    flow.connect("price.priced", "invoice.priced")  # fan-in through the join
    flow.connect("stock.checked", "invoice.checked")
    flow.connect("invoice.invoice", "ledger.invoices")
    flow.output("invoice.invoice")
    flow.output("ledger.summary")
    flow.validate()
    return flow


def main() -> None:
    result = wf.run(build_flow(), {"intake.orders": ORDERS}, timeout_s=30)
    print(f"status: {result.status.value}")
    for invoice in result.outputs["invoice.invoice"]:
        print(f"invoice: {json.dumps(invoice)}")
    print(f"summary: {json.dumps(result.outputs['ledger.summary'][0])}")


if __name__ == "__main__":
    main()
