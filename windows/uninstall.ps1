# Removes the primer service and its event log source, then primer.exe from
# %ProgramFiles%\primer. primer's state and configuration (%ProgramData%\primer) stay unless
# -Purge is given (which also removes an older primer's %SystemDrive%\etc\primer). Run elevated.
param([switch]$Purge)
$ErrorActionPreference = 'Stop'
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Write-Error 'primer uninstall: run this script elevated (as Administrator)'
    exit 1
}
$dest = Join-Path $env:ProgramFiles 'primer'
$exe = Join-Path $dest 'primer.exe'
if (Test-Path $exe) {
    & $exe service uninstall
    if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 10) {
        Write-Error "primer uninstall: service uninstall failed ($LASTEXITCODE)"; exit 1
    }
}
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue $dest
if ($Purge) {
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:ProgramData 'primer')
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $env:SystemDrive 'etc\primer')
}
Write-Output 'primer removed'
