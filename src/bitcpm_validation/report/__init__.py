"""How a report is made: the runner (papermill), what a chapter records (`recorder`), the results
contract, the summary and verdicts, rendering (HTML / PDF / Markdown), publishing and comparing runs.

Never imports a chapter module: everything it shows comes from the results files.
"""
