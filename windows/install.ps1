# Installs primer as a Windows service. Run in an elevated PowerShell from the unpacked zip:
#   powershell -NoProfile -ExecutionPolicy Bypass -File .\install.ps1
# Copies primer.exe to %ProgramFiles%\primer, the default configuration (only when none is
# there) to %SystemDrive%\etc\primer\primer.yaml, and registers the service (automatic start,
# LocalSystem, restart on failure, event log source "primer") with `primer.exe service install`.
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
$conf = Join-Path $env:SystemDrive 'etc\primer'
New-Item -ItemType Directory -Force -Path $conf | Out-Null
$yaml = Join-Path $conf 'primer.yaml'
if (-not (Test-Path $yaml)) { Copy-Item (Join-Path $here 'primer.yaml') $yaml }
$exe = Join-Path $dest 'primer.exe'
& $exe service install
if ($LASTEXITCODE -ne 0) { Write-Error "primer install: service install failed ($LASTEXITCODE)"; exit 1 }
if (-not $NoStart) { Start-Service -Name primer }
Get-Service -Name primer | Format-List Name, Status, StartType
