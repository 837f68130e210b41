"""A new adapter is named after its round ("DPO round 2 · default"), not a hex id."""

import json

from engine.store import Store


class _Saves:
    def save_pretrained(self, path):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "adapter_config.json").write_text("{}")


def test_a_new_adapter_is_named_kind_round_number_and_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path))
    from engine.training import kinds, rounds
    from engine.training.config import to_dict

    store = Store(tmp_path / "studio.sqlite3")
    default = to_dict(kinds.make_config("dpo", "default", {}))
    names = []
    for config in (default, {**default, "learning_rate": 1e-3}):
        rec = rounds.RoundRecord(store, "dpo", json.loads(json.dumps(config)))
        names.append(rounds.write_adapter(store, _Saves(), rec.id, "bundled", None, {})["name"])
    assert names == ["DPO round 1 · default", "DPO round 2 · custom"]
    listed = {r["name"]: r["display_name"] for r in rounds.list_adapters(store)}
    assert listed == {n: n for n in names}
    store.close()
