"""autolfads.config"""
