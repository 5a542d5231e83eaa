# Packer provisioner example: bake primer into a Debian/Ubuntu golden image built by any
# builder (qemu, amazon-ebs, openstack...). Needs Packer 1.7 or later (`required_plugins`).
# Replace the plugin and the source with the builder you use.

packer {
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.0.0"
    }
  }
}

variable "primer_deb" {
  type        = string
  description = "Path of the primer .deb built by packaging/build-deb.sh (target/debian/primer_<version>_<arch>.deb)"
}

build {
  sources = ["source.qemu.debian"]

  provisioner "file" {
    source      = var.primer_deb
    destination = "/tmp/primer.deb"
  }

  provisioner "shell" {
    inline = [
      # sshd and a network backend (networkd ships with systemd); primer replaces cloud-init.
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server /tmp/primer.deb",
      "sudo DEBIAN_FRONTEND=noninteractive apt-get purge -y cloud-init || true",
      "sudo systemctl enable systemd-networkd.service ssh.service primer.service primer-scripts.service primer-reclaim.service",
      # A golden image must not carry the builder VM's instance state or identity.
      "sudo rm -rf /var/lib/primer /var/lib/cloud /tmp/primer.deb",
      "sudo rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub",
      "sudo truncate -s 0 /etc/machine-id",
    ]
  }
}
