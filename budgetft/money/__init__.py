"""Money: what an hour of hardware costs (catalog; GPU names in gpu_names; which catalogue file is
used in catalog_store; how old its prices are in freshness; Billing Catalog SKUs -> rows in
billing_skus), how Google bills it, and the on-disk record of every dollar a run spends (ledger,
meter).

All amounts are `decimal.Decimal` US dollars; charges round UP to a millionth of a dollar so the
ledger never under-counts. Nothing here imports torch or a cloud SDK.
"""
