"""An asyncio program: tasks, a queue, timeouts, and a TCP echo server and
client on loopback.  Its output is deterministic."""
import asyncio


async def producer(queue: asyncio.Queue, n: int) -> None:
    for i in range(n):
        await queue.put(i)
        await asyncio.sleep(0)
    await queue.put(None)


async def consumer(queue: asyncio.Queue) -> int:
    total = 0
    while (item := await queue.get()) is not None:
        total += item * item
    return total


async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def echo_round_trip(lines: list[str]) -> list[str]:
    server = await asyncio.start_server(handle_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for line in lines:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        answers.append((await reader.readline()).decode().rstrip("\n"))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return answers


async def main() -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    _, total = await asyncio.gather(producer(queue, 100), consumer(queue))
    print("sum of squares:", total)
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)
    except asyncio.TimeoutError:
        print("timeout: caught")
    results = await asyncio.gather(*(asyncio.sleep(0.001 * i, result=i) for i in range(5)))
    print("gathered:", results)
    print("echo:", await echo_round_trip(["hello", "pyward", "asyncio"]))
    loop = asyncio.get_running_loop()
    print("executor:", await loop.run_in_executor(None, sum, range(1000)))


if __name__ == "__main__":
    asyncio.run(main())
