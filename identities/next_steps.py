"""The "next steps" a newcomer follows once a request is ready: apply the ServiceAccount, label
the pod template, set the image, let the SDK's DefaultAzureCredential pick up what the webhook
injects, then verify. Pure data for the UI and API; no Django."""

from __future__ import annotations

from dataclasses import dataclass

from identities.handover import SDK_MINIMUMS
from identities.manifests import USE_LABEL, HandoverSpec

# Why the label, in one line (AZURE-FACTS §4.5: the webhook mutates only labelled pod templates).
USE_LABEL_WHY = (
    "the workload identity webhook only injects the token and the AZURE_* variables into pods "
    "whose template carries this label"
)


@dataclass(frozen=True)
class SdkSnippet:
    """A minimal program for one language: build DefaultAzureCredential and hand it on."""

    key: str  # a DOM-safe id part: "python", "dotnet", "go", "java"
    language: str
    install: str
    code: str


def _minimum(language: str) -> str:
    return next(sdk.minimum_version for sdk in SDK_MINIMUMS if sdk.language == language)


# Each reads AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE (and
# AZURE_AUTHORITY_HOST) from the environment the webhook set; none names a secret.
SDK_SNIPPETS: tuple[SdkSnippet, ...] = (
    SdkSnippet(
        key="python",
        language="Python",
        install=f'pip install "azure-identity>={_minimum("Python")}"',
        code=(
            "from azure.identity import DefaultAzureCredential\n"
            "\n"
            "# Finds the AZURE_* variables the webhook injected and uses workload identity.\n"
            "credential = DefaultAzureCredential()\n"
            "# Hand it to any Azure SDK client, e.g.\n"
            "# SecretClient(vault_url=..., credential=credential)\n"
        ),
    ),
    SdkSnippet(
        key="dotnet",
        language=".NET",
        install=f"dotnet add package Azure.Identity --version {_minimum('.NET')}",
        code=(
            "using Azure.Identity;\n"
            "\n"
            "// Finds the AZURE_* variables the webhook injected and uses workload identity.\n"
            "var credential = new DefaultAzureCredential();\n"
            "// Hand it to any Azure SDK client, e.g.\n"
            "// new SecretClient(new Uri(vaultUrl), credential);\n"
        ),
    ),
    SdkSnippet(
        key="go",
        language="Go",
        install=f"go get github.com/Azure/azure-sdk-for-go/sdk/azidentity@v{_minimum('Go')}",
        code=(
            'import "github.com/Azure/azure-sdk-for-go/sdk/azidentity"\n'
            "\n"
            "// Finds the AZURE_* variables the webhook injected and uses workload identity.\n"
            "credential, err := azidentity.NewDefaultAzureCredential(nil)\n"
            "if err != nil {\n"
            "\tlog.Fatal(err)\n"
            "}\n"
            "// Hand it to any Azure SDK client, e.g.\n"
            "// azsecrets.NewClient(vaultURL, credential, nil)\n"
        ),
    ),
    SdkSnippet(
        key="java",
        language="Java",
        install=f"com.azure:azure-identity:{_minimum('Java')} (Maven or Gradle)",
        code=(
            "import com.azure.identity.DefaultAzureCredential;\n"
            "import com.azure.identity.DefaultAzureCredentialBuilder;\n"
            "\n"
            "// Finds the AZURE_* variables the webhook injected and uses workload identity.\n"
            "DefaultAzureCredential credential = new DefaultAzureCredentialBuilder().build();\n"
            "// Hand it to any Azure SDK client, e.g.\n"
            "// new SecretClientBuilder().vaultUrl(vaultUrl).credential(credential)\n"
            "//     .buildClient();\n"
        ),
    ),
)


@dataclass(frozen=True)
class NextSteps:
    apply_service_account: str
    apply_deployment: str
    use_label: str
    use_label_why: str
    image_placeholder: str
    snippets: tuple[SdkSnippet, ...]


def next_steps(spec: HandoverSpec) -> NextSteps:
    """The steps for one ready identity, with its files' names (as the page's downloads name
    them) and its placeholder image."""
    stem = f"{spec.namespace}-{spec.service_account}"
    return NextSteps(
        apply_service_account=f"kubectl apply -f {stem}-serviceaccount.yaml",
        apply_deployment=f"kubectl apply -f {stem}-deployment.yaml",
        use_label=f'{USE_LABEL}: "true"',
        use_label_why=USE_LABEL_WHY,
        image_placeholder=spec.container_image,
        snippets=SDK_SNIPPETS,
    )
