from django.contrib.admin.apps import AdminConfig


class ShardwatchAdminConfig(AdminConfig):
    """django.contrib.admin with Shardwatch's site (config/admin.py), which lets in every role,
    not only staff. A module of its own: INSTALLED_APPS imports it before models can load."""

    default_site = "config.admin.ShardwatchAdminSite"
