"""Every runtime of nsjail/runtimes.toml in real jails: the compile stage, and each language's
own idiom of the attacks (a C fork bomb, a Java thread bomb, a Node network request...)."""

from __future__ import annotations

import msgspec
import pytest

from corral_core.job import Limits, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox

HELLO = {
    "c": '#include <stdio.h>\nint main(int c, char **v) { char s[64]; scanf("%63s", s); printf("hi %s %s\\n", s, v[1]); return 0; }\n',
    "cpp": '#include <iostream>\n#include <string>\nint main(int c, char **v) { std::string s; std::cin >> s; std::cout << "hi " << s << " " << v[1] << "\\n"; }\n',
    "javascript": 'const s = require("fs").readFileSync(0, "utf8").trim(); console.log(`hi ${s} ${process.argv[2]}`);\n',
    "bash": 'read s; echo "hi $s $1"\n',
    "java": 'import java.util.Scanner;\npublic class Main { public static void main(String[] a) { System.out.println("hi " + new Scanner(System.in).next() + " " + a[0]); } }\n',
    "go": 'package main\n\nimport "fmt"\nimport "os"\n\nfunc main() { var s string; fmt.Scan(&s); fmt.Println("hi", s, os.Args[1]) }\n',
    "rust": 'fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap(); println!("hi {} {}", s.trim(), std::env::args().nth(1).unwrap()); }\n',
    "python-sci": 'import sys, numpy\nprint("hi", input(), sys.argv[1])\n',
}

BROKEN = {
    "c": "int main(void) { return missing; }\n",
    "cpp": "int main() { undeclared(); }\n",
    "java": "public class Main { public static void main(String[] a) { int x = \"no\"; } }\n",
    "go": "package main\n\nfunc main() { undeclared() }\n",
    "rust": "fn main() { let x: i32 = \"no\"; }\n",
}

# Each language's own way to try what no job may do, and the verdict it must get. (Go's thread
# bomb ends in "failed to create new OS thread" with every goroutine's stack on stderr: that
# dump may pass the output cap first.)
ATTACKS = [
    ("c", "fork_bomb", "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n", {Verdict.TIME_LIMIT_EXCEEDED}),
    ("c", "memory_bomb", "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }\n", {Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("c", "output_flood", "#include <stdio.h>\nint main(void) { for (;;) puts(\"flood flood flood\"); }\n", {Verdict.OUTPUT_LIMIT_EXCEEDED}),
    ("c", "write_outside_box", '#include <stdio.h>\nint main(void) { FILE *f = fopen("/usr/pwned", "w"); puts(f ? "WROTE" : "refused"); return f != 0; }\n', {Verdict.OK}),
    ("c", "read_host_secret", '#include <stdio.h>\nint main(void) { FILE *f = fopen("/etc/shadow", "r"); puts(f ? "READ" : "refused"); return f != 0; }\n', {Verdict.OK}),
    ("c", "network", '#include <stdio.h>\n#include <sys/socket.h>\nint main(void) { int s = socket(AF_INET, SOCK_STREAM, 0); puts(s < 0 ? "refused" : "SOCKET"); return s >= 0; }\n', {Verdict.OK}),
    ("javascript", "network", 'require("http").get("http://127.0.0.1:6379/", () => console.log("CONNECTED")).on("error", (e) => console.log("refused"));\n', {Verdict.OK}),
    ("javascript", "memory_bomb", "const a = []; for (;;) a.push(new Array(1e6).fill(1));\n", {Verdict.MEMORY_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("javascript", "read_host_secret", 'try { require("fs").readFileSync("/etc/shadow"); console.log("READ"); } catch { console.log("refused"); }\n', {Verdict.OK}),
    ("bash", "fork_bomb", ":(){ :|:& };:\n", {Verdict.TIME_LIMIT_EXCEEDED, Verdict.OK, Verdict.RUNTIME_ERROR}),
    ("java", "thread_bomb", "public class Main { public static void main(String[] a) { for (;;) new Thread(() -> { try { Thread.sleep(60000); } catch (InterruptedException e) {} }).start(); } }\n", {Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("java", "memory_bomb", "import java.util.*;\npublic class Main { public static void main(String[] a) { List<long[]> l = new ArrayList<>(); for (;;) l.add(new long[1 << 17]); } }\n", {Verdict.MEMORY_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("java", "output_flood", "public class Main { public static void main(String[] a) { for (;;) System.out.println(\"flood flood flood\"); } }\n", {Verdict.OUTPUT_LIMIT_EXCEEDED}),
    ("java", "network", 'public class Main { public static void main(String[] a) { try { new java.net.Socket("127.0.0.1", 6379); System.out.println("CONNECTED"); } catch (Exception e) { System.out.println("refused"); } } }\n', {Verdict.OK}),
    ("java", "write_outside_box", 'public class Main { public static void main(String[] a) { try { new java.io.FileWriter("/usr/pwned").close(); System.out.println("WROTE"); } catch (Exception e) { System.out.println("refused"); } } }\n', {Verdict.OK}),
    ("java", "read_host_secret", 'public class Main { public static void main(String[] a) { try { java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/etc/shadow")); System.out.println("READ"); } catch (Exception e) { System.out.println("refused"); } } }\n', {Verdict.OK}),
    ("go", "thread_bomb", "package main\n\nimport \"runtime\"\n\nfunc main() { for { go func() { runtime.LockOSThread(); select {} }() } }\n", {Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR, Verdict.MEMORY_LIMIT_EXCEEDED, Verdict.OUTPUT_LIMIT_EXCEEDED}),
    ("go", "fork_bomb", 'package main\n\nimport "os/exec"\n\nfunc main() { for { exec.Command("/box/main").Start() } }\n', {Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR, Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("go", "memory_bomb", "package main\n\nfunc main() { var keep [][]byte; for { b := make([]byte, 1<<20); for i := range b { b[i] = 1 }; keep = append(keep, b) } }\n", {Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("go", "output_flood", 'package main\n\nimport "fmt"\n\nfunc main() { for { fmt.Println("flood flood flood") } }\n', {Verdict.OUTPUT_LIMIT_EXCEEDED}),
    ("go", "network", 'package main\n\nimport ("fmt"; "net")\n\nfunc main() { if _, err := net.Dial("tcp", "127.0.0.1:6379"); err != nil { fmt.Println("refused") } else { fmt.Println("CONNECTED") } }\n', {Verdict.OK}),
    ("go", "write_outside_box", 'package main\n\nimport ("fmt"; "os")\n\nfunc main() { if os.WriteFile("/usr/pwned", []byte("x"), 0o644) != nil { fmt.Println("refused") } else { fmt.Println("WROTE") } }\n', {Verdict.OK}),
    ("go", "read_host_secret", 'package main\n\nimport ("fmt"; "os")\n\nfunc main() { if _, err := os.ReadFile("/etc/shadow"); err != nil { fmt.Println("refused") } else { fmt.Println("READ") } }\n', {Verdict.OK}),
    ("rust", "thread_bomb", "fn main() { loop { std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(60))); } }\n", {Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("rust", "fork_bomb", 'fn main() { loop { let _ = std::process::Command::new("/box/main").spawn(); } }\n', {Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR, Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("rust", "memory_bomb", "fn main() { let mut keep = Vec::new(); loop { keep.push(vec![1u8; 1 << 20]); } }\n", {Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("rust", "output_flood", 'fn main() { loop { println!("flood flood flood"); } }\n', {Verdict.OUTPUT_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR}),
    ("rust", "network", 'fn main() { match std::net::TcpStream::connect("127.0.0.1:6379") { Ok(_) => println!("CONNECTED"), Err(_) => println!("refused") } }\n', {Verdict.OK}),
    ("rust", "write_outside_box", 'fn main() { match std::fs::write("/usr/pwned", "x") { Ok(_) => println!("WROTE"), Err(_) => println!("refused") } }\n', {Verdict.OK}),
    ("rust", "read_host_secret", 'fn main() { match std::fs::read("/etc/shadow") { Ok(_) => println!("READ"), Err(_) => println!("refused") } }\n', {Verdict.OK}),
    ("python-sci", "write_package_dir", 'import numpy\ntry:\n    open(numpy.__file__, "a")\n    print("WROTE")\nexcept OSError:\n    print("refused")\n', {Verdict.OK}),
    ("python-sci", "memory_bomb", "import numpy\nkeep = []\nwhile True:\n    keep.append(numpy.ones(1 << 20))\n", {Verdict.MEMORY_LIMIT_EXCEEDED}),
    ("bash", "write_outside_box", 'echo x > /usr/pwned 2>/dev/null && echo WROTE || echo refused\n', {Verdict.OK}),
]


@pytest.fixture(scope="module")
def sandbox() -> NsJailSandbox:
    return nsjail_sandbox()


def runtime_defaults(sandbox: NsJailSandbox, language: str) -> Limits:
    runtime = next(runtime for runtime in sandbox.runtimes() if runtime.language == language)
    return DEFAULT_LIMIT_POLICY.for_runtime(runtime).defaults


def request(language: str, code: str, **changes: object) -> RunRequest:
    limits = DEFAULT_LIMIT_POLICY.defaults
    for runtime in nsjail_sandbox().runtimes():
        if runtime.language == language:
            limits = DEFAULT_LIMIT_POLICY.for_runtime(runtime).defaults
    if language == "python-sci":
        # Importing the scientific stack takes seconds of wall time on a loaded machine: these
        # cases are about verdicts, not speed (the CPU limit stays the runtime's own).
        limits = msgspec.structs.replace(limits, wall_time_ms=DEFAULT_LIMIT_POLICY.maxima.wall_time_ms)
    return RunRequest(language=language, code=code, limits=limits, **changes)  # type: ignore[arg-type]


def offered(sandbox: NsJailSandbox, language: str) -> None:
    if language not in {runtime.language for runtime in sandbox.runtimes()}:
        pytest.fail(f"{language} is not offered here ({sandbox.runtimes()}): run the install step (scripts/install-system-deps.sh)")


def explain(result: RunResult) -> str:
    return f"{result.verdict} exit={result.exit_code} signal={result.signal}\n{result.compile_output}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("language", sorted(HELLO))
async def test_hello_with_stdin_and_arguments(sandbox: NsJailSandbox, language: str) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, HELLO[language], stdin="there\n", args=("arg1",)))
    assert result.verdict is Verdict.OK, explain(result)
    assert result.stdout == "hi there arg1\n"


@pytest.mark.parametrize("language", sorted(BROKEN))
async def test_code_that_does_not_compile_is_a_compile_error_with_the_compilers_output(
    sandbox: NsJailSandbox, language: str
) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, BROKEN[language]))
    assert result.verdict is Verdict.COMPILE_ERROR, explain(result)
    assert result.compile is not None and result.compile.verdict is Verdict.RUNTIME_ERROR
    assert result.compile_output.strip() and result.stdout == ""


async def test_a_compile_that_runs_out_of_memory_says_so(sandbox: NsJailSandbox) -> None:
    offered(sandbox, "cpp")
    # The whole standard library parsed and optimised: far more than 24 MiB for g++.
    code = "#include <bits/stdc++.h>\nint main() { std::map<int, std::vector<std::string>> m; return m.size(); }\n"
    base = request("cpp", code)
    tight = RunRequest(language="cpp", code=code, limits=base.limits.__class__(
        **{**{name: getattr(base.limits, name) for name in base.limits.__struct_fields__}, "compile_memory_mb": 24}
    ))
    result = await sandbox.run(tight)
    assert result.verdict is Verdict.COMPILE_ERROR, explain(result)
    assert result.compile is not None and result.compile.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert "compile memory limit" in result.compile_output


async def test_only_the_artifact_reaches_the_run(sandbox: NsJailSandbox) -> None:
    offered(sandbox, "c")
    code = '#include <stdio.h>\n#include <dirent.h>\nint main(void) { DIR *d = opendir("."); struct dirent *e; while ((e = readdir(d))) if (e->d_name[0] != \'.\') puts(e->d_name); }\n'
    result = await sandbox.run(request("c", code))
    assert result.verdict is Verdict.OK, explain(result)
    assert result.stdout.split() == ["main"]


async def test_python_sci_imports_the_scientific_stack_and_saves_a_plot_in_box(sandbox: NsJailSandbox) -> None:
    offered(sandbox, "python-sci")
    code = (
        "import os, numpy, pandas, scipy.stats, matplotlib, matplotlib.pyplot as plt\n"
        "frame = pandas.DataFrame({'x': numpy.arange(5)})\n"
        "plt.plot(frame.x, frame.x ** 2)\n"
        "plt.savefig('/box/plot.png')\n"
        "print(matplotlib.get_backend(), int(frame.x.sum()), round(float(scipy.stats.norm.cdf(0)), 2), os.path.getsize('/box/plot.png') > 1000)\n"
    )
    # Within the runtime's own default limits, wall time included: a plot is what it is for.
    result = await sandbox.run(RunRequest(language="python-sci", code=code, limits=runtime_defaults(sandbox, "python-sci")))
    assert result.verdict is Verdict.OK, explain(result)
    assert (result.stdout, result.stderr) == ("Agg 10 0.5 True\n", "")


@pytest.mark.parametrize(("language", "name", "code", "verdicts"), ATTACKS, ids=[f"{a[0]}-{a[1]}" for a in ATTACKS])
async def test_attacks_in_each_languages_idiom(
    sandbox: NsJailSandbox, language: str, name: str, code: str, verdicts: set[Verdict]
) -> None:
    offered(sandbox, language)
    result = await sandbox.run(request(language, code))
    assert result.verdict in verdicts, explain(result)
    for marker in ("WROTE", "READ", "SOCKET", "CONNECTED"):
        assert marker not in result.stdout
