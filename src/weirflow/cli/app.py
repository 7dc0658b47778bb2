def main() -> None:
    raise SystemExit("cli not built yet")
