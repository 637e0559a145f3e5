from edgeseg.train.sampler import ResumableSampler


def test_order_depends_only_on_seed_and_epoch():
    data = range(10)
    a, b = ResumableSampler(data, seed=1), ResumableSampler(data, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_start_skips_consumed_samples_without_changing_the_rest():
    s = ResumableSampler(range(10), seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_start(4)
    assert list(s) == full[4:] and len(s) == 6


def test_ranks_split_every_global_batch_and_drop_the_uneven_tail():
    ranks = [ResumableSampler(range(9), num_replicas=2, rank=r, seed=5) for r in range(2)]
    single = ResumableSampler(range(9), seed=5)
    order = list(single)
    assert [len(r) for r in ranks] == [4, 4]
    # Global batch t of 4 = local batches t of 2 on both ranks: the same samples as one process.
    shards = [list(r) for r in ranks]
    for t in range(2):
        local = shards[0][2 * t : 2 * t + 2] + shards[1][2 * t : 2 * t + 2]
        assert sorted(local) == sorted(order[4 * t : 4 * t + 4])
