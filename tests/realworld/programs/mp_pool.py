"""multiprocessing: a Pool with the default start method and one with spawn,
map/imap/apply_async, a Manager dict and a Queue across a Process."""
import multiprocessing as mp


def square(x: int) -> int:
    return x * x


def fill(d, q, n: int) -> None:
    for i in range(n):
        d[i] = i * 10
    q.put(("done", n))


def main() -> None:
    with mp.Pool(2) as pool:
        print("map:", pool.map(square, range(10)))
        print("imap:", list(pool.imap(square, range(5))))
        print("apply_async:", pool.apply_async(square, (12,)).get(timeout=60))
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        print("spawn map:", pool.map(square, range(6)))
    with mp.Manager() as manager:
        d = manager.dict()
        q = mp.Queue()
        p = mp.Process(target=fill, args=(d, q, 4))
        p.start()
        print("queue:", q.get(timeout=60))
        p.join()
        print("manager dict:", dict(sorted(d.items())), "exitcode:", p.exitcode)


if __name__ == "__main__":
    main()
