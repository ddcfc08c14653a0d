"""The Azure Key Vault backend of multicloud-store (``MULTICLOUD_STORE_BACKEND=azure``).

Importing this package imports nothing from the Azure SDK: the driver lives in
`multicloud_store_azure.driver`, which the registry imports only when the backend is selected, and the
emulator for tests in `multicloud_store_azure.testing`.
"""

__all__: list[str] = []
