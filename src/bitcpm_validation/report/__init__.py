"""How a report is made: the runner (papermill), what a chapter records (`recorder`), the results
contract, the summary and verdicts, rendering (HTML / PDF / Markdown), publishing and comparing runs; and the
measurement libraries several chapters share (`stats`: accuracy statistics, `grading`: is model output language).

Never imports a chapter module: everything it shows comes from the results files.
"""
