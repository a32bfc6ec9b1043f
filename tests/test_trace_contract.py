"""The renovation's contract: every shipped scenario keeps its event trace, bit for bit.

The hashes below were recorded before the middle of desim was renovated
(issue 10: wiring layer, typed scenario, registries, store package, one
namespace), on shortened runs at three seeds. A change that alters any of
them changes behaviour, and must say why in its commit.
"""
from pathlib import Path

import pytest

from desim.app.runner import run
from desim.app.scenario import load

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
UNTIL = {"warehouse-xl-500-event.toml": 2.0, "network-partition.toml": 15.0}  # else min(until, 120 s)

HASHES = {
    "network-partition.toml:1": "101ecdaf79f974a8c1459736d5ff777c35d1413b8eee41cef0e59ea89e202ccc",
    "network-partition.toml:2": "f39222acc10e1154680a1ab8ff2585ec6ef2e5cb2cb4f3bb8ce44c497b5e70c7",
    "network-partition.toml:3": "3d6792e8df3229b2aae70752d6060c3d868a8c0d2ad839962f8e89e1f6e3f031",
    "train-small.toml:1": "b076f473e824debf5e2b8ad086d76b540fb631eb577b5c618325889a99383d80",
    "train-small.toml:2": "d0d45cbed38f026a2051111424ccd571a80972cc1d5b88d2a441f8ceeaa9efe2",
    "train-small.toml:3": "f4daa57efa541e1946f70e22818aa6064d53dbdb1cb92502f8bcad952a9978a7",
    "train-tiny.toml:1": "b83c8f07385d147650bdd14f99d601ac0fd9b98dd56c571a31096dedab434fd7",
    "train-tiny.toml:2": "461c051f31b08a8a403f2d4c7ff9350f250c2c1cc1ae540177c370cd404aad1c",
    "train-tiny.toml:3": "f4d7963787be3b0393f5177d5b377a82026cad740e37ef7a314bbb7f870adee6",
    "warehouse-medium-event.toml:1": "b18df4e23e66bb6f14a6af359bbe3277a724fb9fa71b1eca8c8a4227b6c221f7",
    "warehouse-medium-event.toml:2": "587a0bb2ea1e92e3c67f87d6ff1a323664c89220c908909f97796e9be0211342",
    "warehouse-medium-event.toml:3": "42806059b695296a6dd6eebdf965eb5f0a03da884f7d348a9743ef9dacdce643",
    "warehouse-medium.toml:1": "c7e85ec46e8595fe9be05f9c33bdf0d0fcb3ae6c369a2c1789c61745ed2272f8",
    "warehouse-medium.toml:2": "329acc49cc8d9d52a70d3d057031bcf09885472c3ade45931bd49a829c02423c",
    "warehouse-medium.toml:3": "1c920691af784135bcfb51e4063fd407fc1d9a395d8b5b9457686ded9783fc4f",
    "warehouse-small-event.toml:1": "8c3782e966dee5a0a6e3599b9373d6659e3f82ab06a9b7c25916943e1596aadc",
    "warehouse-small-event.toml:2": "a968d42766c6cd43a3bd97b385a611d06082e7f730d61ec27a61302326c744e8",
    "warehouse-small-event.toml:3": "ba62d639d1d12e4b53312e0ac11ec45eab05d6f5a2070127090aedaed7f7697c",
    "warehouse-small.toml:1": "b076f473e824debf5e2b8ad086d76b540fb631eb577b5c618325889a99383d80",
    "warehouse-small.toml:2": "d0d45cbed38f026a2051111424ccd571a80972cc1d5b88d2a441f8ceeaa9efe2",
    "warehouse-small.toml:3": "f4daa57efa541e1946f70e22818aa6064d53dbdb1cb92502f8bcad952a9978a7",
    "warehouse-tiny-event.toml:1": "f8a5dd18fab7c2ad37e0e2498ddab5bbc14bb074fb32779575fc5494be024ea4",
    "warehouse-tiny-event.toml:2": "49b14fb611a0a00c1f9410957afad25b24995c071a2a315092fb7cc452843ffd",
    "warehouse-tiny-event.toml:3": "72ff43431fae21ae79ddc715f34bced04ebb03bf3ce3de298d8471a48e2a67b0",
    "warehouse-tiny.toml:1": "b83c8f07385d147650bdd14f99d601ac0fd9b98dd56c571a31096dedab434fd7",
    "warehouse-tiny.toml:2": "461c051f31b08a8a403f2d4c7ff9350f250c2c1cc1ae540177c370cd404aad1c",
    "warehouse-tiny.toml:3": "f4d7963787be3b0393f5177d5b377a82026cad740e37ef7a314bbb7f870adee6",
    # added with the scenario (issue 12): the order pipeline, its services and the guard
    "warehouse-pipeline.toml:1": "eeb0fdfcf085a541a3d002bd5cccecb888b587d3b0b34bb080f927c6560d659e",
    "warehouse-pipeline.toml:2": "8c8504ef8d9bc4cc0714902aa23c8663cc522be241955693b78118f744116fe7",
    "warehouse-pipeline.toml:3": "8d18573e35c2f678696d5eec678b331127d788000e39536d772260318e1275f7",
    # added with the scenario (issue 12): robots that act on beliefs of their peers' positions
    "warehouse-peers.toml:1": "6c5c90933e65ab15201490b5dd7c0810758d25e4fbd40f6f241606e3bf59f418",
    "warehouse-peers.toml:2": "36ef338cbb7e58a57f1d19a309d237506583f6580e694d5c1ec3dc799533899d",
    "warehouse-peers.toml:3": "d1de0ea9188ffb2b85746d89d5e008f80a37c1c86d452a4d84450979348ee6c3",
    "warehouse-xl-500-event.toml:1": "d4e9abc06f7ab13e815ec45585ec3bebe97086b42b7307fb410233c936aa28a1",
    "warehouse-xl-500-event.toml:2": "6490cb459f946d0fa3d57138071153952563cd41843038350073ed683960f718",
    "warehouse-xl-500-event.toml:3": "64b343de1c3545efc8e866cc63ddaf0af79d56e883f35ea9f2a696308436f98b",
    # added with the scenario (issue 16): the tiny floor crowded with 4 robots, for the credit study
    "train-tiny-4.toml:1": "bdd608b112198024de87f23a906f4507e3d5010883c7adb51903f543bfb9b8b0",
    "train-tiny-4.toml:2": "7eec4c49df9a886fe3127101aa436557f2acd152a75300d7b85c8ee290361111",
    "train-tiny-4.toml:3": "b9a9e21ed80fd234187d744e294e484563987f77459e0e09491577e22664835a",
}


@pytest.mark.parametrize("name", sorted({k.split(":")[0] for k in HASHES}))
def test_trace_hashes_unchanged(name):
    assert sorted(p.name for p in SCENARIOS.glob("*.toml")) == sorted({k.split(":")[0] for k in HASHES})
    sc = load(SCENARIOS / name)
    until = UNTIL.get(name, min(sc.until, 120.0))
    got = {f"{name}:{seed}": run(sc, seed, until, file=str(SCENARIOS / name)).summary["trace_hash"] for seed in (1, 2, 3)}
    assert got == {k: v for k, v in HASHES.items() if k.startswith(name + ":")}
