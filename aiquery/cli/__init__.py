"""The `aiquery` command line (`main`), the demo job (`demo`) and SQL scripts (`script`)."""
