"""numpy arrays and pandas frames through %rpyc_push, %rpyc_pull and %%remote -o, without
pickle: typed, size-checked before anything is allocated, large ones in chunks (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ipy_rig import RequestCounter, connect
from ipy_servers import ServerProcess, spawn
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rpyc_ipy.remote.values import CHUNK, INLINE_MAX, unpack

REPO = Path(__file__).resolve().parents[2]


def test_arrays_and_frames_round_trip_through_the_magics(ip: InteractiveShell,
                                                         exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    assert not session.pickle_allowed  # all of this works without pickle
    frame = pd.DataFrame({"x": [1.5, 2.5, np.nan], "name": ["a", None, "c"],
                          "when": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris")},
                         index=pd.Index([10, 20, 30], name="id"))
    ip.user_ns.update(arr=np.arange(12, dtype=">i4").reshape(3, 4), f=np.asfortranarray(
        np.eye(3)), df=frame, ser=frame["x"], scalar=np.float32(0.5))
    with capture_output():
        ip.run_line_magic("rpyc_push", "s arr f df ser scalar")
    checked = session.execute("(arr.dtype.str, f.flags.f_contiguous, type(df).__name__, "
                              "df['when'].dt.tz.key, float(ser.sum()), type(scalar).__name__)")
    assert checked.data["text/plain"] == "('>i4', True, 'DataFrame', 'Europe/Paris', 4.0, " \
                                         "'float32')"
    with capture_output():
        ip.run_line_magic("rpyc_pull", "s arr2=arr f2=f df2=df ser2=ser scalar2=scalar")
    got = ip.user_ns
    assert got["arr2"].dtype.str == ">i4" and (got["arr2"] == got["arr"]).all()
    assert got["f2"].flags.f_contiguous and (got["f2"] == np.eye(3)).all()
    pd.testing.assert_frame_equal(got["df2"], frame)
    pd.testing.assert_series_equal(got["ser2"], frame["x"])
    assert type(got["scalar2"]) is np.float32 and got["scalar2"] == 0.5


def test_a_large_array_streams_in_chunks_both_ways(ip: InteractiveShell,
                                                   exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    nbytes = INLINE_MAX + 3 * CHUNK + 8  # over the inline size: it streams
    session.execute(f"import numpy as np\nbig = np.arange({nbytes // 8}, dtype=np.float64)\n"
                    "view = big[::-1]")  # negative strides: copied once on the server
    counter = RequestCounter(session.conn)
    got = session.pull(["big", "view"], max_bytes=4 * nbytes)
    big, view = got["big"][0], got["view"][0]
    assert big.shape == (nbytes // 8,) and big[-1] == nbytes // 8 - 1 and big.flags.writeable
    assert (view == big[::-1]).all() and view.flags.c_contiguous
    chunks = -(-nbytes // CHUNK)
    assert counter.count == 1 + 2 * chunks  # one pull, then one request per chunk
    progress: list[tuple[int, int]] = []
    reader = session.stream_reader(lambda done, total: progress.append((done, total)))
    session.execute("import numpy as np\nagain = np.ones(3 * (1 << 20))")  # 24 MiB
    raw = session.backend.pull(("again",), False, 1 << 30, ("ndarray",))
    assert unpack(raw[0][2], max_bytes=1 << 30, read=reader).sum() == 3 * (1 << 20)
    assert progress == [(min(i * CHUNK, 24 << 20), 24 << 20) for i in range(1, 7)]
    assert reader.received == 24 << 20
    assert got["big"][1] > nbytes  # the bytes that came, streamed ones included
    # and back: the server reads the chunks from this side's outbox
    sizes = session.push({"back": big * 2}, max_bytes=4 * nbytes)
    assert sizes["back"] > nbytes
    assert session.execute("float(back[-1]), back.shape").data["text/plain"] == \
        f"({2.0 * (nbytes // 8 - 1)}, ({nbytes // 8},))"


def test_remote_output_takes_arrays_and_frames(ip: InteractiveShell,
                                               exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    with capture_output():
        ip.run_cell_magic("remote", "-s s -o small", "import numpy as np\nnp.ones((2, 3), 'u2')")
        ip.run_cell_magic("remote", "-s s -o large",
                          f"np.zeros({(INLINE_MAX + CHUNK) // 8}, 'f8')")
        ip.run_cell_magic("remote", "-s s -o frame",
                          "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    assert ip.user_ns["small"].dtype == np.uint16 and ip.user_ns["small"].shape == (2, 3)
    assert ip.user_ns["large"].nbytes == (INLINE_MAX + CHUNK) // 8 * 8
    pd.testing.assert_frame_equal(ip.user_ns["frame"], pd.DataFrame({"a": [1, 2]}))


def test_the_pull_limit_refuses_a_large_array_before_any_chunk(
        ip: InteractiveShell, exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.execute("import numpy as np\nbig = np.zeros((1 << 20) + 1, 'u1')")
    ip.run_line_magic("config", "RPyCPolicy.max_pull_bytes = 1048576")  # one byte short
    counter = RequestCounter(session.conn)
    with pytest.raises(UsageError, match=r"size guard|size limit"):
        ip.run_line_magic("rpyc_pull", "s big")
    assert counter.count == 1  # refused: no chunk was asked for


def test_object_arrays_and_columns_are_refused_by_name(ip: InteractiveShell,
                                                       exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.execute("import numpy as np, pandas as pd\nobjs = np.array([object()])\n"
                    "df = pd.DataFrame({'ok': [1], 'odd': [object()]})")
    with pytest.raises(UsageError, match=r"cannot pull 'objs': .*dtype object.*convert it"):
        ip.run_line_magic("rpyc_pull", "s objs")
    with pytest.raises(UsageError, match="odd"):
        ip.run_line_magic("rpyc_pull", "s df")


@pytest.mark.parametrize("kind", ["classic", "rpyc-classic"])
def test_arrays_move_to_and_from_classic_servers(ip: InteractiveShell, server_dir: Path,
                                                 kind: str) -> None:
    server = spawn(kind, server_dir)  # ours, and rpyc 6.0.2's
    try:
        session = connect(ip, "c", server, "--classic")
        assert session.moves_arrays  # the shipped engine carries the array codec
        session.execute("import numpy as np\na = np.linspace(0, 1, 5)")
        ip.user_ns["b"] = np.arange(INLINE_MAX // 4 + 1, dtype="<i4")  # streams
        with capture_output():
            ip.run_line_magic("rpyc_pull", "c a")
            ip.run_line_magic("rpyc_push", "c b")
        assert (ip.user_ns["a"] == np.linspace(0, 1, 5)).all()
        assert session.execute("int(b[-1])").data["text/plain"] == str(INLINE_MAX // 4)
    finally:
        server.stop()


def test_without_numpy_on_the_server_a_push_names_the_extra(ip: InteractiveShell,
                                                            server_dir: Path) -> None:
    server = spawn("classic-nodata", server_dir)
    try:
        session = connect(ip, "c", server, "--classic")
        assert session.info.get("data") == ()
        ip.user_ns.update(a=np.ones(3), plain={"k": [1, 2]})
        with capture_output():
            ip.run_line_magic("rpyc_push", "c plain")  # everything else works
        with pytest.raises(UsageError, match=r"cannot push 'a': .*numpy.ndarray .*the server "
                           r"has no numpy \(pip install 'rpyc_ipy\[data\]' there\)"):
            ip.run_line_magic("rpyc_push", "c a")
        assert session.execute("plain").data["text/plain"] == "{'k': [1, 2]}"
    finally:
        server.stop()


NO_NUMPY_CLIENT = """
import sys
for name in ("numpy", "pandas", "pyarrow"):
    sys.modules[name] = None  # as if not installed
from rpyc_ipy.ipython.session import open_session
from rpyc_ipy.target import ConnectionTarget
sess = open_session(ConnectionTarget("127.0.0.1", int(sys.argv[1])))
sess.execute("import numpy as np\\na = np.ones(3)\\nplain = [1, 2.5, 'x']")
print(sess.pull(["plain"])["plain"][0])
try:
    sess.pull(["a"])
except Exception as exc:
    print(type(exc).__name__, exc)
sess.end()
"""


def test_without_numpy_here_a_pull_names_the_extra(exec_server: ServerProcess) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_NUMPY_CLIENT),
                           str(exec_server.port)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[1, 2.5, 'x']"  # everything else works
    assert lines[1].startswith("UsageError cannot pull 'a'") and "numpy" in lines[1]
    assert "pip install 'rpyc_ipy[data]'" in lines[1]



def test_a_streamed_pull_tells_how_far_its_bytes_are(ip: InteractiveShell,
                                                     exec_server: ServerProcess) -> None:
    """pull(on_bytes=...) hears of every chunk of a large array (%rpyc_pull shows it on
    its bar as "4.0 MiB of 24.0 MiB")."""
    session = connect(ip, "s", exec_server)
    session.execute("import numpy as np\nwide = np.ones(3 * (1 << 20))")  # 24 MiB, 6 chunks
    items: list[tuple[int, int]] = []
    chunks: list[tuple[int, int]] = []
    got = session.pull(["wide"], on_progress=lambda done, total: items.append((done, total)),
                       on_bytes=lambda done, total: chunks.append((done, total)))
    assert got["wide"][0].sum() == 3 * (1 << 20)
    assert items == [(0, 1), (1, 1)]
    assert chunks == [(min(i * CHUNK, 24 << 20), 24 << 20) for i in range(1, 7)]
