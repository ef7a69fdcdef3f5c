# shellcheck shell=bash
# Stops the compose stack and deletes its database volume, so the next run starts empty as the
# contest's runs did.

compose down --volumes
