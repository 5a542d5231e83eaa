# Installs primer as a Windows service. Run in an elevated PowerShell from the unpacked zip:
#   powershell -NoProfile -ExecutionPolicy Bypass -File .\install.ps1
# Copies primer.exe to %ProgramFiles%\primer, the default configuration (only when none is
# there) to %ProgramData%\primer\primer.yaml, and registers the service (automatic start,
# LocalSystem, restart on failure, event log source "primer") with `primer.exe service install`.
# %ProgramData%\primer, primer.yaml.d and primer.yaml get a protected DACL: SYSTEM and
# Administrators full control, nothing else, owner Administrators (primer refuses to read a
# configuration anyone else owns or may change). A configuration left by an older primer in
# %SystemDrive%\etc\primer (which any user may create) is migrated only after a warning, and
# only when SYSTEM or Administrators own it and nobody else may change it.
# -NoStart: leave the service stopped (an image being built: it runs at the next boot).
param([switch]$NoStart)
$ErrorActionPreference = 'Stop'
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Write-Error 'primer install: run this script elevated (as Administrator)'
    exit 1
}
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$dest = Join-Path $env:ProgramFiles 'primer'
New-Item -ItemType Directory -Force -Path $dest | Out-Null
if (Get-Service -Name primer -ErrorAction SilentlyContinue) {
    & (Join-Path $dest 'primer.exe') service uninstall | Out-Host
}
Copy-Item -Force (Join-Path $here 'primer.exe') $dest
foreach ($f in 'README.md', 'LICENSE', 'copyright') {
    $p = Join-Path $here $f
    if (Test-Path $p) { Copy-Item -Force $p $dest }
}
# SYSTEM (SY) and Administrators (BA) full control, protected (no inherited entry), owner BA.
$dirSddl = 'O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)'
$fileSddl = 'O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)'
function Set-Private([string]$Path) {
    if (Test-Path -PathType Container $Path) {
        $acl = New-Object System.Security.AccessControl.DirectorySecurity
        $acl.SetSecurityDescriptorSddlForm($dirSddl)
    } else {
        $acl = New-Object System.Security.AccessControl.FileSecurity
        $acl.SetSecurityDescriptorSddlForm($fileSddl)
    }
    Set-Acl -LiteralPath $Path -AclObject $acl
}
# Whether only SYSTEM, Administrators or TrustedInstaller own $Path and may change it (the
# check primer makes before it reads a configuration file).
function Test-Trusted([string]$Path) {
    $trusted = 'S-1-5-18', 'S-1-5-32-544', 'S-1-5-80-956008885-3459058467-3233405555-2219165050-3181198888'
    $acl = Get-Acl -LiteralPath $Path
    $owner = (New-Object Security.Principal.NTAccount($acl.Owner)).Translate([Security.Principal.SecurityIdentifier]).Value
    if ($trusted -notcontains $owner) { return $false }
    $write = [Security.AccessControl.FileSystemRights]'WriteData, AppendData, DeleteSubdirectoriesAndFiles, Delete, ChangePermissions, TakeOwnership'
    foreach ($r in $acl.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        if ($r.AccessControlType -eq 'Allow' -and ($r.FileSystemRights -band $write) -and
            $trusted -notcontains $r.IdentityReference.Value) { return $false }
    }
    return $true
}
$conf = Join-Path $env:ProgramData 'primer'
$dropins = Join-Path $conf 'primer.yaml.d'
New-Item -ItemType Directory -Force -Path $conf | Out-Null
Set-Private $conf
$yaml = Join-Path $conf 'primer.yaml'
$old = Join-Path $env:SystemDrive 'etc\primer\primer.yaml'
if (-not (Test-Path $yaml) -and (Test-Path $old)) {
    Write-Warning ("primer install: $old is no longer read: primer reads $yaml (any user may " +
        "create $env:SystemDrive\etc and so configure primer).")
    $suspect = @($old) + @(Get-ChildItem -ErrorAction SilentlyContinue -File "$old.d\*.yaml" | ForEach-Object FullName) |
        Where-Object { -not (Test-Trusted $_) -or -not (Test-Trusted (Split-Path -Parent $_)) }
    if ($suspect) {
        Write-Warning ("primer install: NOT migrated: someone other than SYSTEM and Administrators " +
            "owns or may change: $($suspect -join ', '). Review it, then copy it to $yaml by hand.")
    } else {
        Write-Warning "primer install: migrating $old (and $old.d) to $yaml; remove $env:SystemDrive\etc\primer afterwards."
        Copy-Item -LiteralPath $old -Destination $yaml
        if (Test-Path "$old.d") {
            New-Item -ItemType Directory -Force -Path $dropins | Out-Null
            Copy-Item -Path "$old.d\*.yaml" -Destination $dropins
        }
    }
}
if (-not (Test-Path $yaml)) { Copy-Item (Join-Path $here 'primer.yaml') $yaml }
Set-Private $yaml
if (Test-Path $dropins) {
    Set-Private $dropins
    Get-ChildItem -File $dropins | ForEach-Object { Set-Private $_.FullName }
}
$exe = Join-Path $dest 'primer.exe'
& $exe service install
if ($LASTEXITCODE -ne 0) { Write-Error "primer install: service install failed ($LASTEXITCODE)"; exit 1 }
if (-not $NoStart) { Start-Service -Name primer }
Get-Service -Name primer | Format-List Name, Status, StartType
