// The kernel's floor for a run with N injected files (issue 15's 5,000-file goal): N small files
// created and written in a new directory that is then renamed into place, done COPIES times
// (a first run writes the targets and the local copy, DESIGN.md's `drive/` tree), one syncfs.
// Nothing primer does beyond this is in it: compare its CPU with primer's on the same mount.
//
//   gcc -O2 -static -o floor benches/floor.c
//   mkdir -p MNT/x && /usr/bin/time -f "%U %S %e" ./floor MNT/x 5000 2
//
// MNT: a journaled ext4 (e.g. a 256 MiB image: truncate, mkfs.ext4, mount -o loop); empty DIR
// before each run.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor DIR N COPIES\n");
        return 2;
    }
    int n = atoi(argv[2]), copies = atoi(argv[3]);
    char p[4096], buf[64];
    for (int c = 0; c < copies; c++) {
        snprintf(p, sizeof p, "%s/d%d.tmp", argv[1], c);
        if (mkdir(p, 0755)) { perror("mkdir"); return 1; }
        int d = open(p, O_DIRECTORY | O_RDONLY);
        for (int i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "f%05d", i);
            int f = openat(d, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            if (f < 0) { perror("openat"); return 1; }
            int l = snprintf(buf, sizeof buf, "injected file %d\n", i);
            if (write(f, buf, l) != l) return 1;
            close(f);
        }
        char q[4096];
        snprintf(q, sizeof q, "%s/d%d", argv[1], c);
        rename(p, q);
        if (c == copies - 1) syncfs(d);
        close(d);
    }
    return 0;
}
