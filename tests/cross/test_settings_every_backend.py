"""Settings-only behaviour that needs every backend installed: same-store identities and typo suggestions."""

from __future__ import annotations

from multicloud_store.store import SecretsStore


def test_cloud_locations_come_from_settings_alone() -> None:
    def identity(environ: dict[str, str]) -> tuple[object, ...]:
        return SecretsStore.from_env(environ).store_identity()

    aws = {"MULTICLOUD_STORE_BACKEND": "aws", "MULTICLOUD_STORE_AWS_REGION": "eu-west-1"}
    assert identity(aws) == identity({**aws, "MULTICLOUD_STORE_DEPLOYMENT_ID": "default"})
    assert identity(aws) != identity({**aws, "MULTICLOUD_STORE_AWS_REGION": "us-east-1"})
    local_endpoint = {**aws, "MULTICLOUD_STORE_AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    assert identity(aws) != identity(local_endpoint)
    assert identity(local_endpoint) == identity(
        {**local_endpoint, "MULTICLOUD_STORE_AWS_ENDPOINT_URL": "http://127.0.0.1:5000/"}
    )
    gcp = {"MULTICLOUD_STORE_BACKEND": "gcp", "MULTICLOUD_STORE_GCP_PROJECT_ID": "p1"}
    assert identity(gcp) == identity(dict(gcp)) != identity({**gcp, "MULTICLOUD_STORE_GCP_PROJECT_ID": "p2"})
    azure = {"MULTICLOUD_STORE_BACKEND": "azure", "MULTICLOUD_STORE_AZURE_VAULT_NAME": "kv1"}
    assert identity(azure) == identity(
        {
            "MULTICLOUD_STORE_BACKEND": "azure",
            "MULTICLOUD_STORE_AZURE_VAULT_URL": "https://KV1.vault.azure.net/",
        }
    )


def test_unknown_backend_variables_suggest_the_closest_name() -> None:
    from multicloud_store.settings import unknown_variables

    found = unknown_variables(
        {
            "MULTICLOUD_STORE_BACKEND": "aws",
            "MULTICLOUD_STORE_AWS_REGOIN": "eu-west-1",
            "MULTICLOUD_STORE_AWS_REGION": "eu-west-1",
            "MULTICLOUD_STORE_GCP_PROJECT_ID": "p",
            "MULTICLOUD_STORE_AZURE_VAULT_URL": "https://kv.vault.azure.net",
            "MULTICLOUD_STORE_VAULT_MOUNT": "secret",
            "MULTICLOUD_STORE_SQL_TABEL": "t",
        }
    )
    assert found == {
        "MULTICLOUD_STORE_AWS_REGOIN": "MULTICLOUD_STORE_AWS_REGION",
        "MULTICLOUD_STORE_SQL_TABEL": "MULTICLOUD_STORE_SQL_TABLE",
    }


def test_zenml_backend_options_are_known_under_their_own_prefix() -> None:
    from multicloud_store.settings import unknown_variables

    found = unknown_variables(
        {
            "ZENML_SECRETS_STORE_TYPE": "custom",
            "ZENML_SECRETS_STORE_BACKEND": "aws",
            "ZENML_SECRETS_STORE_AWS_REGION": "eu-west-1",
            "ZENML_SECRETS_STORE_AWS_REGOIN": "eu-west-1",
        },
        prefix="ZENML_SECRETS_STORE_",
        also_known=("TYPE", "CLASS_PATH"),
    )
    assert found == {"ZENML_SECRETS_STORE_AWS_REGOIN": "ZENML_SECRETS_STORE_AWS_REGION"}
