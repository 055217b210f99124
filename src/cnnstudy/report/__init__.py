"""Reading a study folder back into tables, comparisons with their statistics, findings in words,
sweep sections, plots, and the Markdown/HTML report."""
