# managed by primer: generated from the config drive's network data; local edits are kept until that data changes
# Windows network configuration from the config drive, rendered by primer (backend powershell).
# Run by the primer service: powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File network.ps1
# Idempotent: a second run changes nothing. Exit code 0: done; 1: a step failed (stderr names the link).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 2.0

# Runs one link's steps; the first error ends the script with exit code 1 and a message
# naming the link and its adapter.
function Invoke-PrimerStep([string]$What, [scriptblock]$Body) {
    try {
        & $Body
    } catch {
        [Console]::Error.WriteLine(('primer network: {0}: {1}' -f $What, $_.Exception.Message))
        exit 1
    }
}

# The one hardware adapter with this MAC address. Team NICs and VLAN NICs share a member's
# MAC, so only hardware interfaces count.
function Get-PrimerAdapter([string]$Mac) {
    $a = @(Get-NetAdapter | Where-Object { $_.MacAddress -eq $Mac -and $_.HardwareInterface })
    if ($a.Count -ne 1) {
        throw ('{0} hardware network adapters with MAC address {1}, expected 1' -f $a.Count, $Mac)
    }
    $a[0]
}

# The adapter named $Name, waiting up to 60 s (a team NIC appears after New-NetLbfoTeam
# returns). Names are interface names without wildcard characters.
function Wait-PrimerAdapter([string]$Name) {
    for ($n = 0; $n -lt 60; $n++) {
        $a = Get-NetAdapter -Name $Name -ErrorAction SilentlyContinue
        if ($a) { return $a }
        Start-Sleep -Seconds 1
    }
    throw ('no network adapter named {0} after 60 s' -f $Name)
}

# Renames the adapter unless it has the name already; returns it.
function Rename-PrimerAdapter($Adapter, [string]$Name) {
    if ($Adapter.Name -ne $Name) {
        Rename-NetAdapter -Name $Adapter.Name -NewName $Name -Confirm:$false
    }
    Get-NetAdapter -InterfaceIndex $Adapter.ifIndex
}

# Tags a physical adapter with a VLAN id (the driver must support it); the adapter restarts.
function Set-PrimerVlan($Adapter, [int]$VlanId) {
    if ($Adapter.VlanID -ne $VlanId) {
        Set-NetAdapter -Name $Adapter.Name -VlanID $VlanId -Confirm:$false
    }
    Get-NetAdapter -InterfaceIndex $Adapter.ifIndex
}

# An LBFO team of the adapters with these MACs: created, or brought to this mode, algorithm
# and membership. $Standby: the MAC of the one standby member ('' for none).
function Set-PrimerTeam([string]$Name, [string[]]$Members, [string]$Mode, [string]$Algorithm, [string]$LacpTimer, [string]$Standby) {
    $names = @($Members | ForEach-Object { (Get-PrimerAdapter $_).Name })
    $team = Get-NetLbfoTeam -Name $Name -ErrorAction SilentlyContinue
    if (-not $team) {
        New-NetLbfoTeam -Name $Name -TeamMembers $names -TeamingMode $Mode -LoadBalancingAlgorithm $Algorithm -Confirm:$false | Out-Null
    } elseif ($team.TeamingMode -ne $Mode -or $team.LoadBalancingAlgorithm -ne $Algorithm) {
        Set-NetLbfoTeam -Name $Name -TeamingMode $Mode -LoadBalancingAlgorithm $Algorithm -Confirm:$false
    }
    foreach ($m in $names) {
        if (-not (Get-NetLbfoTeamMember -Team $Name -Name $m -ErrorAction SilentlyContinue)) {
            Add-NetLbfoTeamMember -Team $Name -Name $m -Confirm:$false
        }
    }
    if ($LacpTimer -ne '' -and (Get-NetLbfoTeam -Name $Name).LacpTimer -ne $LacpTimer) {
        Set-NetLbfoTeam -Name $Name -LacpTimer $LacpTimer -Confirm:$false
    }
    if ($Standby -ne '') {
        $s = (Get-PrimerAdapter $Standby).Name
        if ((Get-NetLbfoTeamMember -Team $Name -Name $s).AdministrativeMode -ne 'Standby') {
            Set-NetLbfoTeamMember -Name $s -AdministrativeMode Standby -Confirm:$false
        }
    }
    Wait-PrimerAdapter $Name
}

# A VLAN interface on a team: created unless the team has a NIC for this VLAN id.
function Add-PrimerTeamVlan([string]$Team, [int]$VlanId, [string]$Name) {
    if (-not (Get-NetLbfoTeamNic -Team $Team -ErrorAction SilentlyContinue | Where-Object { $_.VlanID -eq $VlanId })) {
        Add-NetLbfoTeamNic -Team $Team -VlanID $VlanId -Name $Name -Confirm:$false | Out-Null
    }
    Wait-PrimerAdapter $Name
}

# One address family of one interface: DHCP (and, for IPv6, router discovery) on or off,
# exactly these static addresses (other Manual ones removed) and exactly these routes (other
# NetMgmt ones removed), the MTU when not 0. A family the adapter has no binding for is left
# alone when nothing is wanted of it.
function Set-PrimerFamily([int]$Index, [string]$Family, [bool]$Dhcp, [bool]$RouterDiscovery, [string[]]$Addresses, [object[]]$Routes, [int]$Mtu) {
    $ip = Get-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -ErrorAction SilentlyContinue
    if (-not $ip) {
        if ($Dhcp -or $Addresses.Count -gt 0 -or $Routes.Count -gt 0) {
            throw ('{0} is not enabled on the adapter' -f $Family)
        }
        return
    }
    $want = if ($Dhcp) { 'Enabled' } else { 'Disabled' }
    if ($ip.Dhcp -ne $want) {
        Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -Dhcp $want
    }
    if ($Family -eq 'IPv6') {
        $ra = if ($RouterDiscovery) { 'Enabled' } else { 'Disabled' }
        if ($ip.RouterDiscovery -ne $ra) {
            Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -RouterDiscovery $ra
        }
    }
    if ($Mtu -ne 0 -and $ip.NlMtu -ne $Mtu) {
        Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -NlMtuBytes $Mtu
    }
    $have = @(Get-NetIPAddress -InterfaceIndex $Index -AddressFamily $Family -PrefixOrigin Manual -ErrorAction SilentlyContinue)
    foreach ($h in $have) {
        if ($Addresses -notcontains ('{0}/{1}' -f $h.IPAddress, $h.PrefixLength)) {
            Remove-NetIPAddress -InterfaceIndex $Index -IPAddress $h.IPAddress -Confirm:$false
        }
    }
    foreach ($w in $Addresses) {
        $addr, $len = $w.Split('/')
        if (-not ($have | Where-Object { $_.IPAddress -eq $addr -and $_.PrefixLength -eq [int]$len })) {
            New-NetIPAddress -InterfaceIndex $Index -AddressFamily $Family -IPAddress $addr -PrefixLength ([int]$len) | Out-Null
        }
    }
    $have = @(Get-NetRoute -InterfaceIndex $Index -AddressFamily $Family -Protocol NetMgmt -ErrorAction SilentlyContinue)
    foreach ($h in $have) {
        if (-not ($Routes | Where-Object { $_.To -eq $h.DestinationPrefix -and $_.Via -eq $h.NextHop -and $_.Metric -eq $h.RouteMetric })) {
            Remove-NetRoute -InterfaceIndex $Index -DestinationPrefix $h.DestinationPrefix -NextHop $h.NextHop -Confirm:$false
        }
    }
    foreach ($r in $Routes) {
        if (-not ($have | Where-Object { $_.DestinationPrefix -eq $r.To -and $_.NextHop -eq $r.Via -and $_.RouteMetric -eq $r.Metric })) {
            New-NetRoute -InterfaceIndex $Index -AddressFamily $Family -DestinationPrefix $r.To -NextHop $r.Via -RouteMetric $r.Metric | Out-Null
        }
    }
}

# DNS servers of one interface (none: reset to what DHCP gives) and its connection suffix
# ('' clears it).
function Set-PrimerDns([int]$Index, [string[]]$Servers, [string]$Suffix) {
    if ($Servers.Count -gt 0) {
        Set-DnsClientServerAddress -InterfaceIndex $Index -ServerAddresses $Servers
    } else {
        Set-DnsClientServerAddress -InterfaceIndex $Index -ResetServerAddresses
    }
    if ((Get-DnsClient -InterfaceIndex $Index).ConnectionSpecificSuffix -ne $Suffix) {
        Set-DnsClient -InterfaceIndex $Index -ConnectionSpecificSuffix $Suffix
    }
}

Invoke-PrimerStep 'link interface_1 (MAC 06-52-DB-01-FF-D9)' {
    $a = Get-PrimerAdapter '06-52-DB-01-FF-D9'
    $a = Rename-PrimerAdapter $a 'eth0'
    Set-PrimerFamily -Index $a.ifIndex -Family IPv4 -Dhcp $false -RouterDiscovery $false -Addresses @('10.135.202.146/26') -Routes @(@{ To = '10.0.0.0/8'; Via = '10.135.202.129'; Metric = 256 }, @{ To = '161.26.0.0/16'; Via = '10.135.202.129'; Metric = 256 }) -Mtu 0
    Set-PrimerFamily -Index $a.ifIndex -Family IPv6 -Dhcp $false -RouterDiscovery $false -Addresses @() -Routes @() -Mtu 0
    Set-PrimerDns -Index $a.ifIndex -Servers @('10.0.80.11') -Suffix ''
}

Invoke-PrimerStep 'link interface_2 (MAC 06-F6-71-3B-64-01)' {
    $a = Get-PrimerAdapter '06-F6-71-3B-64-01'
    $a = Rename-PrimerAdapter $a 'eth1'
    Set-PrimerFamily -Index $a.ifIndex -Family IPv4 -Dhcp $false -RouterDiscovery $false -Addresses @('133.133.209.229/28') -Routes @(@{ To = '0.0.0.0/0'; Via = '133.133.209.225'; Metric = 100 }) -Mtu 0
    Set-PrimerFamily -Index $a.ifIndex -Family IPv6 -Dhcp $false -RouterDiscovery $false -Addresses @() -Routes @() -Mtu 0
    Set-PrimerDns -Index $a.ifIndex -Servers @('10.0.80.11') -Suffix ''
}

Invoke-PrimerStep 'link interface_3 (MAC 06-F6-71-3B-64-02)' {
    $a = Get-PrimerAdapter '06-F6-71-3B-64-02'
    Set-PrimerFamily -Index $a.ifIndex -Family IPv4 -Dhcp $false -RouterDiscovery $false -Addresses @('172.20.0.5/16') -Routes @(@{ To = '172.30.0.0/16'; Via = '172.21.0.1'; Metric = 200 }) -Mtu 0
    Set-PrimerFamily -Index $a.ifIndex -Family IPv6 -Dhcp $false -RouterDiscovery $false -Addresses @() -Routes @() -Mtu 0
    Set-PrimerDns -Index $a.ifIndex -Servers @('10.0.80.11') -Suffix ''
}

exit 0
