"""In-memory adapters: verified fakes of every port, for tests and for trying Corral out.

They pass the same contract suites as the real adapters. `InMemorySandbox` runs Python with
`exec` in this process and isolates nothing: never give it code you would not run yourself.
"""
