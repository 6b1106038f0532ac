# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reproducible ISO 9660 images, built with xorriso.  Private to vmhost.virt.

The package is split by what each part holds:

* :mod:`.names`   - the inputs' rules: volume ids, dates, path components, modes (pure);
* :mod:`.plan`    - the planned image tree from files, content, cidata and boot (pure but for
  reading the source trees);
* :mod:`.cidata`  - the cloud-init NoCloud seed files (pure);
* :mod:`.xorriso` - the xorriso command line, the tool environment and reading images back;
* :mod:`.grub`    - the El Torito and EFI boot images (grub-mkimage, the one FAT builder of
  :mod:`..filesystems`);
* :mod:`.writer`  - running xorriso: a new image straight into its file, hashed as it grows; over an
  existing image, streamed and compared as it goes.

Backend: xorriso, chosen by measurement (benchmarks/iso.py): on a 1 GiB tree of
65 570 small files and four large ones, xorriso took 4.5-6.8 s and pycdlib
11.5-11.8 s on a quiet machine (before any date normalisation); on a loaded one
pycdlib used 1.41x xorriso's CPU. xorriso also does El Torito, EFI, hybrid
MBR/GPT and fixed dates natively.

Reproducibility: the tree is planned in sorted order, every file and volume date
comes from one ``source_date_epoch`` (volume creation/modification dates from
``volume_uuid`` when given), owners are 0:0, no ACLs/xattrs/device-inode
numbers are recorded, the preparer/application ids are empty and xorriso runs
with ``TZ=UTC`` and ``-iso_nowtime`` so neither the clock nor the time zone
reaches the image.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
