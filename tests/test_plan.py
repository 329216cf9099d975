from fgbg.config import GenerateConfig
from fgbg.store.plan import Plan


def test_keys_are_padded_unique_dot_free_and_ordered():
    plan = Plan.from_config(3, 4, GenerateConfig(placements=5))
    keys = [plan[i].key for i in range(len(plan))]
    assert len(plan) == 3 * 4 * 2 * 5 and len(set(keys)) == len(keys)
    assert keys[0] == "b000_f000_0_00" and keys[-1] == "b002_f003_1_04"
    assert keys == sorted(keys) and all("." not in k for k in keys)


def test_keys_widen_when_counts_need_it():
    plan = Plan.from_config(1200, 2, GenerateConfig(placements=150, flip=False))
    assert plan[len(plan) - 1].key == "b1199_f001_0_149"


def test_shards_cover_the_plan_once():
    plan = Plan.from_config(3, 4, GenerateConfig(placements=5, shard_size=7))
    shards = plan.shards()
    covered = [i for s in shards for i in range(s.start, s.stop)]
    assert covered == list(range(len(plan)))
    per_bg = Plan.from_config(3, 4, GenerateConfig(placements=5, format="zip")).shards()
    assert [len(s) for s in per_bg] == [40, 40, 40]
