-- Images a template version's appliance_podman_container resources name, recorded at import (issue 13),
-- so the images page can say which templates use an image before anything is garbage collected.
CREATE TABLE template_version_images (
    template_version_id  uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    -- The resource's address in the plan (appliance_podman_container.dev[0]).
    address              text NOT NULL,
    -- The reference as the template writes it: host:port/repository:tag or ...@sha256:...
    image                text NOT NULL,
    PRIMARY KEY (template_version_id, address)
);
CREATE INDEX template_version_images_image ON template_version_images (image);
