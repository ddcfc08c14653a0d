"""multicloud-store's AWS Secrets Manager backend (``MULTICLOUD_STORE_BACKEND=aws``).

Installed as the distribution ``multicloud-store-aws`` (or ``multicloud-store[aws]``); the core finds `AwsDriver`
through the ``multicloud_store.backends`` entry point. Importing this package imports boto3.
"""

from multicloud_store_aws.driver import AwsDriver
from multicloud_store_aws.settings import AwsSettings

__all__ = ["AwsDriver", "AwsSettings", "__version__"]

__version__ = "0.1.0"
