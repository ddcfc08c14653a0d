"""Test helpers shipped in the wheel: the contract suite every driver must pass.

Usage in a driver's test module::

    import pytest
    from multicloud_store.testing import StoreContract

    class TestMyDriver(StoreContract):
        @pytest.fixture
        def make_store(self):
            driver = MyDriver(MySettings(...))
            return lambda deployment_id: SecretsStore(
                StoreSettings(backend="mine", deployment_id=deployment_id), driver=driver
            )

Importing this package imports pytest; nothing in the library imports it.
"""

from multicloud_store.testing.contract import (
    BAD_IDS,
    BAD_VALUES,
    FaultInjector,
    LostAnswerInjector,
    StoreContract,
    StoreFactory,
)

__all__ = ["BAD_IDS", "BAD_VALUES", "FaultInjector", "LostAnswerInjector", "StoreContract", "StoreFactory"]
