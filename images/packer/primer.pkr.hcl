# Packer provisioner example: bake primer into a Debian/Ubuntu golden image built by any
# builder (qemu, amazon-ebs, openstack...). Replace the source with yours.

variable "primer_deb" {
  type        = string
  description = "Path of the primer .deb built by packaging/build-deb.sh"
  default     = "target/debian/primer_0.1.0_amd64.deb"
}

build {
  sources = ["source.qemu.debian"]

  provisioner "file" {
    source      = var.primer_deb
    destination = "/tmp/primer.deb"
  }

  provisioner "shell" {
    inline = [
      "sudo dpkg -i /tmp/primer.deb",
      "sudo systemctl enable primer.service primer-scripts.service primer-reclaim.service",
      # A golden image must not carry the builder VM's instance state or identity.
      "sudo rm -rf /var/lib/primer /tmp/primer.deb",
      "sudo truncate -s 0 /etc/machine-id",
    ]
  }
}
