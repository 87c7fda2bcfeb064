"""Every right a cloud run needs, and no more: the permissions of the custom roles that
infra/gcp/README.md creates, and what `budgetft doctor` checks against them.

Who needs what:
  your account, on the project       budgetftLauncher: create, watch and delete the VM; read quotas,
                                     zones, the network; read the project's IAM policy (to check the
                                     VM's right to delete itself before a run)
  your account, on the bucket        budgetftBucketUser: the run's objects, the bucket's location,
                                     and its IAM policy (to check the VM's rights before a run)
  your account, on the VM's service  budgetftVmUser, on that one account: to attach it to a VM
    account                          (iam.serviceAccounts.actAs)
  the VM's service account, on the   budgetftBucket: its run's objects; storage.buckets.get, which
    bucket                           `gcloud storage rsync` calls first (roles/storage.objectUser
                                     lacks it, so a VM with only that role uploads nothing)
  the VM's service account, on the   budgetftVmSelfDelete: compute.instances.delete, conditioned on
    project                          instance names starting budgetft-, so a VM that is done
                                     deletes itself (and its disk) even with the launcher offline
  the VM's service account, on one   roles/secretmanager.secretAccessor, only with --hf-token-secret
    secret (optional)                (and you, roles/secretmanager.viewer on it: to check that)
"""

from __future__ import annotations

VM_BUCKET_ROLE = "budgetftBucket"
USER_BUCKET_ROLE = "budgetftBucketUser"
LAUNCHER_ROLE = "budgetftLauncher"
SELF_DELETE_ROLE = "budgetftVmSelfDelete"
ACT_AS_ROLE = "budgetftVmUser"

VM_BUCKET_PERMISSIONS = (
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",  # an upload that replaces an object deletes the old one
    "storage.objects.get",
    "storage.objects.list",
)
USER_BUCKET_PERMISSIONS = VM_BUCKET_PERMISSIONS + ("storage.buckets.getIamPolicy",)
LAUNCHER_PERMISSIONS = (
    "compute.projects.get",  # GPUS_ALL_REGIONS
    "compute.regions.get",  # the region's zones and GPU quotas
    "compute.acceleratorTypes.list",  # which zones offer the GPU
    "compute.machineTypes.list",  # which zones offer the machine type
    "compute.networks.get",
    "compute.subnetworks.get",
    "compute.routers.list",  # Cloud NAT, for --no-external-ip
    "compute.instances.create",
    "compute.instances.setMetadata",  # the start-up script
    "compute.instances.setLabels",  # the run label that finds a run's VMs
    "compute.instances.setServiceAccount",
    "compute.disks.create",  # the boot disk
    "compute.subnetworks.use",
    "compute.subnetworks.useExternalIp",  # not needed with --no-external-ip
    "compute.instances.get",
    "compute.instances.list",
    "compute.instances.delete",
    "compute.zoneOperations.get",
    "compute.zoneOperations.list",  # why a VM ended (compute.instances.preempted)
    "resourcemanager.projects.getIamPolicy",  # doctor: the VM may delete itself
)
SELF_DELETE_PERMISSIONS = ("compute.instances.delete",)
SELF_DELETE_CONDITION = 'resource.type == "compute.googleapis.com/Instance" && resource.name.extract("/instances/{name}").startsWith("budgetft-")'
ACT_AS_PERMISSIONS = ("iam.serviceAccounts.actAs",)

# Storage permissions of Google's predefined roles that can stand in for budgetftBucket (IAM's
# roles reference). A role not listed here (another custom role) cannot be checked offline.
PREDEFINED_STORAGE = {
    "roles/storage.admin": set(USER_BUCKET_PERMISSIONS),
    "roles/owner": set(USER_BUCKET_PERMISSIONS),
    "roles/storage.objectAdmin": {"storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"},
    "roles/storage.objectUser": {"storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.legacyBucketOwner": {"storage.buckets.get", "storage.objects.create", "storage.objects.delete", "storage.objects.list", "storage.buckets.getIamPolicy"},
    "roles/storage.legacyBucketWriter": {"storage.buckets.get", "storage.objects.create", "storage.objects.delete", "storage.objects.list"},
    "roles/storage.legacyBucketReader": {"storage.buckets.get", "storage.objects.list"},
    "roles/storage.legacyObjectReader": {"storage.objects.get"},
    "roles/storage.legacyObjectOwner": {"storage.objects.get"},
}
PREDEFINED_DELETE = {"roles/owner", "roles/editor", "roles/compute.admin", "roles/compute.instanceAdmin", "roles/compute.instanceAdmin.v1"}


def custom_role(project: str, role: str) -> str:
    return f"projects/{project}/roles/{role}"


def storage_permissions(roles: set[str], project: str) -> tuple[set[str], set[str]]:
    """(storage permissions these roles grant, roles we cannot read offline)."""
    known = {
        custom_role(project, VM_BUCKET_ROLE): set(VM_BUCKET_PERMISSIONS),
        custom_role(project, USER_BUCKET_ROLE): set(USER_BUCKET_PERMISSIONS),
        custom_role(project, SELF_DELETE_ROLE): set(),  # compute only
        custom_role(project, LAUNCHER_ROLE): set(),
        custom_role(project, ACT_AS_ROLE): set(),
    }
    granted, unknown = set(), set()
    for role in roles:
        perms = known.get(role, PREDEFINED_STORAGE.get(role))
        if perms is None:
            if role.startswith("projects/") or role.startswith("organizations/"):
                unknown.add(role)
            continue
        granted |= perms
    return granted, unknown


def may_delete_itself(roles: set[str], project: str) -> bool:
    return custom_role(project, SELF_DELETE_ROLE) in roles or bool(roles & PREDEFINED_DELETE)
