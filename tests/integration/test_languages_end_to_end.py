"""Every runtime of nsjail/runtimes.toml through HTTP against the real stack: hello world with
stdin and arguments, a non-zero exit, an uncaught error, the time and memory limits, and (for
compiled ones) a compile error, each with its verdict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral_testbed.services import Corral, corral_on_its_own_redis

# Per language: hello (reads a word from stdin, prints it and the first argument), exit 3,
# an uncaught error, a busy loop, a memory hog, and code that does not compile ("": interpreted).
PROGRAMS: dict[str, dict[str, str]] = {
    "c": {
        "hello": '#include <stdio.h>\nint main(int c, char **v) { char s[64]; scanf("%63s", s); printf("hi %s %s\\n", s, v[1]); }\n',
        "exit": "int main(void) { return 3; }\n",
        "error": "#include <stdlib.h>\nint main(void) { abort(); }\n",
        "loop": "int main(void) { for (volatile int i = 0;; i++); }\n",
        "memory": "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) memset(malloc(1 << 20), 1, 1 << 20); }\n",
        "broken": "int main(void) { return missing; }\n",
    },
    "cpp": {
        "hello": '#include <iostream>\n#include <string>\nint main(int c, char **v) { std::string s; std::cin >> s; std::cout << "hi " << s << " " << v[1] << "\\n"; }\n',
        "exit": "int main() { return 3; }\n",
        "error": '#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }\n',
        "loop": "int main() { for (volatile int i = 0;; i++); }\n",
        "memory": "#include <vector>\nint main() { std::vector<std::vector<char>> v; for (;;) v.emplace_back(1 << 20, 1); }\n",
        "broken": "int main() { undeclared(); }\n",
    },
    "javascript": {
        "hello": 'const s = require("fs").readFileSync(0, "utf8").trim(); console.log(`hi ${s} ${process.argv[2]}`);\n',
        "exit": "process.exit(3);\n",
        "error": 'throw new Error("boom");\n',
        "loop": "for (;;) {}\n",
        "memory": "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));\n",
        "broken": "",
    },
    "bash": {
        "hello": 'read s; echo "hi $s $1"\n',
        "exit": "exit 3\n",
        "error": "set -e\nfalse\n",
        "loop": "while :; do :; done\n",
        "memory": "x=a; while :; do x=$x$x; done\n",
        "broken": "",
    },
    "java": {
        "hello": 'import java.util.Scanner;\npublic class Main { public static void main(String[] a) { System.out.println("hi " + new Scanner(System.in).next() + " " + a[0]); } }\n',
        "exit": "public class Main { public static void main(String[] a) { System.exit(3); } }\n",
        "error": 'public class Main { public static void main(String[] a) { throw new IllegalStateException("boom"); } }\n',
        "loop": "public class Main { public static void main(String[] a) { for (long i = 0;; i++); } }\n",
        "memory": "import java.util.*;\npublic class Main { public static void main(String[] a) { List<long[]> l = new ArrayList<>(); for (;;) l.add(new long[1 << 17]); } }\n",
        "broken": 'public class Main { public static void main(String[] a) { int x = "no"; } }\n',
    },
    "go": {
        "hello": 'package main\n\nimport ("fmt"; "os")\n\nfunc main() { var s string; fmt.Scan(&s); fmt.Println("hi", s, os.Args[1]) }\n',
        "exit": 'package main\n\nimport "os"\n\nfunc main() { os.Exit(3) }\n',
        "error": 'package main\n\nfunc main() { panic("boom") }\n',
        "loop": "package main\n\nfunc main() { for {} }\n",
        "memory": "package main\n\nfunc main() { var keep [][]byte; for { b := make([]byte, 1<<20); for i := range b { b[i] = 1 }; keep = append(keep, b) } }\n",
        "broken": "package main\n\nfunc main() { undeclared() }\n",
    },
    "rust": {
        "hello": 'fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap(); println!("hi {} {}", s.trim(), std::env::args().nth(1).unwrap()); }\n',
        "exit": "fn main() { std::process::exit(3); }\n",
        "error": 'fn main() { panic!("boom"); }\n',
        "loop": "fn main() { let x = 0u64; loop { unsafe { std::ptr::read_volatile(&x) }; } }\n",
        "memory": "fn main() { let mut keep = Vec::new(); loop { keep.push(vec![1u8; 1 << 20]); } }\n",
        "broken": 'fn main() { let x: i32 = "no"; }\n',
    },
    "python-sci": {
        "hello": 'import sys, numpy, pandas\nprint("hi", input(), sys.argv[1])\n',
        "exit": "import numpy\nraise SystemExit(3)\n",
        "error": "import numpy\nnumpy.linalg.inv(numpy.zeros((2, 2)))\n",
        "loop": "import numpy\nwhile True:\n    pass\n",
        "memory": "import numpy\nkeep = []\nwhile True:\n    keep.append(numpy.ones(1 << 20))\n",
        "broken": "",
    },
}
LANGUAGES = sorted(PROGRAMS)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    """One stack for the module: compilers are slow, the stack's start-up need not add to them."""
    with corral_on_its_own_redis(tmp_path_factory, workers=2) as running:
        yield running


def run(service: Corral, code: str, **fields: object) -> dict[str, Any]:
    response = httpx.post(f"{service.url}/execute", params={"wait": 30}, json={"code": code, **fields}, timeout=40)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED", body
    return body["result"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", autouse=True)
def offered(service: Corral) -> None:
    languages = {runtime["language"] for runtime in httpx.get(f"{service.url}/runtimes").json()}
    missing = set(LANGUAGES) - languages
    assert not missing, f"not offered (install them: scripts/install-system-deps.sh): {sorted(missing)}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_hello_with_stdin_and_arguments(service: Corral, language: str) -> None:
    result = run(service, PROGRAMS[language]["hello"], language=language, stdin="there\n", args=["arg1"])
    assert (result["verdict"], result["stdout"]) == ("ok", "hi there arg1\n"), result


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_non_zero_exit_is_a_runtime_error(service: Corral, language: str) -> None:
    result = run(service, PROGRAMS[language]["exit"], language=language)
    assert (result["verdict"], result["exit_code"]) == ("runtime_error", 3), result


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_uncaught_error_is_a_runtime_error(service: Corral, language: str) -> None:
    assert run(service, PROGRAMS[language]["error"], language=language)["verdict"] == "runtime_error"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_time_limit(service: Corral, language: str) -> None:
    limits = {"cpu_time_ms": 500, "wall_time_ms": 3000}
    assert run(service, PROGRAMS[language]["loop"], language=language, limits=limits)["verdict"] == "time_limit_exceeded"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_memory_limit(service: Corral, language: str) -> None:
    result = run(service, PROGRAMS[language]["memory"], language=language, limits={"memory_mb": 64})
    # V8 may give up with its own heap error just before the cgroup's limit is reached.
    allowed = {"memory_limit_exceeded"} | ({"runtime_error"} if language == "javascript" else set())
    assert result["verdict"] in allowed, result


def test_python_sci_draws_a_plot_into_box_and_its_packages_are_read_only(service: Corral) -> None:
    code = (
        "import os, numpy, pandas, scipy.optimize, matplotlib.pyplot as plt\n"
        "root = scipy.optimize.brentq(lambda x: x * x - 4, 0, 5)\n"
        "plt.plot(pandas.Series(numpy.arange(5)) ** 2)\n"
        "plt.savefig('plot.png')\n"
        "print(round(root, 6), os.path.getsize('/box/plot.png') > 1000)\n"
        "try:\n    open(os.path.join(os.path.dirname(numpy.__file__), 'x'), 'w')\n    print('WROTE')\n"
        "except OSError as error:\n    print(error.strerror)\n"
    )
    # Seconds of imports on a loaded machine: room in wall time (this case is not about speed).
    result = run(service, code, language="python-sci", limits={"wall_time_ms": 30_000})
    assert (result["verdict"], result["stdout"]) == ("ok", "2.0 True\nRead-only file system\n"), result


@pytest.mark.parametrize("language", [language for language in LANGUAGES if PROGRAMS[language]["broken"]])
def test_code_that_does_not_compile_is_a_compile_error(service: Corral, language: str) -> None:
    result = run(service, PROGRAMS[language]["broken"], language=language)
    assert result["verdict"] == "compile_error" and result["compile_output"], result
    assert result["compile"]["verdict"] == "runtime_error" and result["stdout"] == ""
