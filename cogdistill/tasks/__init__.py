"""Tasks: human data in, a frozen Task (items + human difficulty + trials + prompts + scorer) out.

load.py builds a Task from its config; item_table.py is what every task kind shares; one module
per task kind, named in cogdistill.registry and imported only when a task of that kind is loaded.
"""
