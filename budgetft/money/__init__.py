"""Money: what an hour of hardware costs (catalog), how Google bills it, and the on-disk record of
every dollar a run spends (ledger, meter).

All amounts are `decimal.Decimal` US dollars; charges round UP to a millionth of a dollar so the
ledger never under-counts. Nothing here imports torch or a cloud SDK.
"""
