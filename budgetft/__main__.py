"""`python -m budgetft`: the same as the `budgetft` command."""

from budgetft.cli import main

if __name__ == "__main__":
    main()
